<?php
/*
 * samlgate's SP metadata, converted from GET /saml/metadata by sp-metadata-to-php.php into
 * $SSP_WORK/sp-remote.php when the script runs (the gateway's keys are made per run).
 */
$generated = getenv('SSP_WORK') . '/sp-remote.php';
if (is_file($generated)) {
    include $generated;
}

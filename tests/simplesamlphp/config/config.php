<?php
/*
 * SimpleSAMLphp 1.19 (Debian 12 package `simplesamlphp`) as a test IdP for samlgate.
 * Used by scripts/simplesamlphp-interop.sh, which sets:
 *   SIMPLESAMLPHP_CONFIG_DIR  this directory
 *   SSP_BASEURL               http://127.0.0.1:PORT/   (php -S serving /usr/share/simplesamlphp/www)
 *   SSP_WORK                  a scratch directory: idp.key, idp.crt, sp-remote.php, log/, tmp/
 * Nothing here is fit for production (fixed salt and admin password, loopback only).
 */
$work = getenv('SSP_WORK');
if ($work === false || $work === '') {
    throw new Exception('SSP_WORK is not set (see scripts/simplesamlphp-interop.sh)');
}

$config = [
    'baseurlpath' => getenv('SSP_BASEURL'),
    'certdir' => $work . '/',
    'loggingdir' => $work . '/log/',
    'datadir' => $work . '/data/',
    'tempdir' => $work . '/tmp',
    'metadatadir' => __DIR__ . '/../metadata/',

    'technicalcontact_name' => 'samlgate tests',
    'technicalcontact_email' => 'na@example.org',
    'timezone' => 'UTC',
    'secretsalt' => 'samlgate-interop-test-salt-not-secret',
    'auth.adminpassword' => 'samlgate-interop-admin',
    'admin.protectindexpage' => false,
    'admin.protectmetadata' => false,

    'showerrors' => true,
    'errorreporting' => false,
    'debug' => ['saml' => true, 'backtraces' => true, 'validatexml' => false],
    'logging.level' => SimpleSAML\Logger::DEBUG,
    'logging.handler' => 'file',
    'logging.logfile' => 'simplesamlphp.log',

    'enable.saml20-idp' => true,
    'enable.shib13-idp' => false,
    'module.enable' => [
        'exampleauth' => true,
        'core' => true,
        'saml' => true,
        'admin' => true,
    ],

    'session.cookie.secure' => false,
    'session.cookie.samesite' => null,
    'session.phpsession.savepath' => $work . '/sessions',
    'store.type' => 'phpsession',

    'language.default' => 'en',
    'language.available' => ['en', 'ja'],
    'trusted.url.domains' => ['127.0.0.1'],
];

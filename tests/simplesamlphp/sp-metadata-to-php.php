<?php
/*
 * php sp-metadata-to-php.php SP-METADATA.xml OUT.php
 * Parses samlgate's SP metadata with SimpleSAMLphp's own SAMLParser (so the interop covers
 * whether SimpleSAMLphp accepts it) and writes a saml20-sp-remote entry that also requires
 * signed AuthnRequests and logout messages from the SP.
 */
require '/usr/share/simplesamlphp/lib/_autoload.php';

[$_, $in, $out] = $argv;
$entities = \SimpleSAML\Metadata\SAMLParser::parseDescriptorsString(file_get_contents($in));
$php = "<?php\n// generated from " . basename($in) . "\n";
$n = 0;
foreach ($entities as $id => $e) {
    $md = $e->getMetadata20SP();
    if ($md === null) {
        fwrite(STDERR, "$id: no SPSSODescriptor\n");
        exit(1);
    }
    unset($md['entityDescriptor'], $md['expire']);
    $md['validate.authnrequest'] = true;
    $md['validate.logout'] = true;
    $md['sign.logout'] = true;
    $md['NameIDFormat'] = 'urn:oasis:names:tc:SAML:2.0:nameid-format:persistent';
    $php .= '$metadata[' . var_export($id, true) . '] = ' . var_export($md, true) . ";\n";
    $n++;
}
if ($n !== 1) {
    fwrite(STDERR, "expected one entity, got $n\n");
    exit(1);
}
file_put_contents($out, $php);

<?php
/*
 * The IdP. Signs assertions and logout messages with RSA-SHA256, requires signed AuthnRequests
 * and LogoutRequests/Responses from SPs (so a completed login proves SimpleSAMLphp verified
 * samlgate's Redirect-binding signature), persistent NameID = gmisAccountId.
 */
$metadata['__DYNAMIC:1__'] = [
    'host' => '__DEFAULT__',
    'privatekey' => 'idp.key',
    'certificate' => 'idp.crt',
    'auth' => 'example-userpass',

    'signature.algorithm' => 'http://www.w3.org/2001/04/xmldsig-more#rsa-sha256',
    'saml20.sign.assertion' => true,
    'saml20.sign.response' => true,
    'sign.logout' => true,
    'redirect.sign' => true,
    'validate.authnrequest' => true,
    'validate.logout' => true,
    'logouttype' => 'traditional',

    'NameIDFormat' => 'urn:oasis:names:tc:SAML:2.0:nameid-format:persistent',
    'attributes.NameFormat' => 'urn:oasis:names:tc:SAML:2.0:attrname-format:basic',
    'authproc' => [
        10 => [
            'class' => 'saml:AttributeNameID',
            'attribute' => 'gmisAccountId',
            'Format' => 'urn:oasis:names:tc:SAML:2.0:nameid-format:persistent',
        ],
    ],
];

<?php
/*
 * Test users. Attribute names are the ones samlgate's [attributes] map reads (G-MIS names).
 * staff1 / staff1pass : a 病院 (hospital) account, allowed by the gateway's default policy.
 */
$config = [
    'admin' => ['core:AdminPassword'],

    'example-userpass' => [
        'exampleauth:UserPass',
        'staff1:staff1pass' => [
            'gmisAccountId' => ['GM7000001'],
            'accountCategory' => ['病院'],
            'facilityCode' => ['1310000099'],
            'facilityName' => ['相互運用テスト病院'],
            'displayName' => ['試験 花子'],
            'mail' => ['staff1@example.jp'],
        ],
    ],
];

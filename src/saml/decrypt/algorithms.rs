//! What is accepted: the algorithm URIs (an allow-list), their openssl counterparts, and the
//! limits on the structure.

use openssl::hash::MessageDigest;
use openssl::symm::Cipher;

pub const NS_XENC: &str = "http://www.w3.org/2001/04/xmlenc#";
pub const NS_XENC11: &str = "http://www.w3.org/2009/xmlenc11#";
pub const NS_DS: &str = "http://www.w3.org/2000/09/xmldsig#";

pub const TYPE_ELEMENT: &str = "http://www.w3.org/2001/04/xmlenc#Element";
pub const TYPE_ENCRYPTED_KEY: &str = "http://www.w3.org/2001/04/xmlenc#EncryptedKey";

pub const AES128_CBC: &str = "http://www.w3.org/2001/04/xmlenc#aes128-cbc";
pub const AES192_CBC: &str = "http://www.w3.org/2001/04/xmlenc#aes192-cbc";
pub const AES256_CBC: &str = "http://www.w3.org/2001/04/xmlenc#aes256-cbc";
pub const AES128_GCM: &str = "http://www.w3.org/2009/xmlenc11#aes128-gcm";
pub const AES192_GCM: &str = "http://www.w3.org/2009/xmlenc11#aes192-gcm";
pub const AES256_GCM: &str = "http://www.w3.org/2009/xmlenc11#aes256-gcm";

pub const RSA_OAEP_MGF1P: &str = "http://www.w3.org/2001/04/xmlenc#rsa-oaep-mgf1p";
pub const RSA_OAEP: &str = "http://www.w3.org/2009/xmlenc11#rsa-oaep";
pub const RSA_1_5: &str = "http://www.w3.org/2001/04/xmlenc#rsa-1_5";

/// Content-encryption algorithms decrypted here, strongest first (for SP metadata).
pub const DATA_ALGORITHMS: [&str; 6] = [
    AES256_GCM, AES192_GCM, AES128_GCM, AES256_CBC, AES192_CBC, AES128_CBC,
];
/// Key-transport algorithms decrypted here (for SP metadata).
pub const KEY_TRANSPORT_ALGORITHMS: [&str; 2] = [RSA_OAEP, RSA_OAEP_MGF1P];

/// EncryptedKeys tried per document (each costs one RSA private-key operation per SP key).
pub const MAX_ENCRYPTED_KEYS: usize = 4;
pub(super) const MAX_DEPTH: usize = 64;
/// Elements inside the EncryptedAssertion (a real one has ~15).
pub(super) const MAX_ELEMENTS: usize = 512;

pub(super) struct DataAlg {
    pub(super) uri: &'static str,
    pub(super) cipher: Cipher,
    pub(super) key_len: usize,
    pub(super) gcm: bool,
}

pub(super) fn data_alg(uri: &str) -> Option<DataAlg> {
    let (uri, cipher, key_len, gcm) = match uri {
        AES128_CBC => (AES128_CBC, Cipher::aes_128_cbc(), 16, false),
        AES192_CBC => (AES192_CBC, Cipher::aes_192_cbc(), 24, false),
        AES256_CBC => (AES256_CBC, Cipher::aes_256_cbc(), 32, false),
        AES128_GCM => (AES128_GCM, Cipher::aes_128_gcm(), 16, true),
        AES192_GCM => (AES192_GCM, Cipher::aes_192_gcm(), 24, true),
        AES256_GCM => (AES256_GCM, Cipher::aes_256_gcm(), 32, true),
        _ => return None,
    };
    Some(DataAlg {
        uri,
        cipher,
        key_len,
        gcm,
    })
}

pub(super) fn digest_alg(uri: &str) -> Option<MessageDigest> {
    Some(match uri {
        "http://www.w3.org/2000/09/xmldsig#sha1" => MessageDigest::sha1(),
        "http://www.w3.org/2001/04/xmldsig-more#sha224" => MessageDigest::sha224(),
        "http://www.w3.org/2001/04/xmlenc#sha256" => MessageDigest::sha256(),
        "http://www.w3.org/2001/04/xmldsig-more#sha384" => MessageDigest::sha384(),
        "http://www.w3.org/2001/04/xmlenc#sha512" => MessageDigest::sha512(),
        _ => return None,
    })
}

pub(super) fn mgf_alg(uri: &str) -> Option<MessageDigest> {
    Some(match uri {
        "http://www.w3.org/2009/xmlenc11#mgf1sha1" => MessageDigest::sha1(),
        "http://www.w3.org/2009/xmlenc11#mgf1sha224" => MessageDigest::sha224(),
        "http://www.w3.org/2009/xmlenc11#mgf1sha256" => MessageDigest::sha256(),
        "http://www.w3.org/2009/xmlenc11#mgf1sha384" => MessageDigest::sha384(),
        "http://www.w3.org/2009/xmlenc11#mgf1sha512" => MessageDigest::sha512(),
        _ => return None,
    })
}

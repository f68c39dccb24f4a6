//! Values made by independent libraries (eciespy, coincurve, cryptography): our crypto
//! must read and verify every one (CONTRACT.md "Encryption").

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;

fn vectors() -> Value {
    serde_json::from_str(include_str!("../fixtures/test-vectors.json")).expect("vectors")
}

fn hex_of(v: &Value) -> Vec<u8> {
    hex::decode(v.as_str().expect("hex string")).expect("hex")
}

fn b64_of(v: &Value) -> Vec<u8> {
    STANDARD
        .decode(v.as_str().expect("base64 string"))
        .expect("base64")
}

#[test]
fn member_key_compresses_to_the_vector() {
    let v = vectors();
    let compressed = hex_of(&v["member"]["publicKeyCompressedHex"]);
    let uncompressed = hex_of(&v["member"]["publicKeyUncompressedHex"]);
    assert_eq!(
        brightchat::crypto::compress_public_key(&uncompressed)
            .expect("valid")
            .to_vec(),
        compressed
    );
    assert_eq!(
        brightchat::crypto::compress_public_key(&compressed)
            .expect("valid")
            .to_vec(),
        compressed
    );
    let secret: [u8; 32] = hex_of(&v["member"]["privateKeyHex"])
        .try_into()
        .expect("32 bytes");
    let key = brightchat::crypto::ServerKey::from_bytes(secret).expect("valid secret");
    assert_eq!(key.public_key().to_vec(), compressed);
}

#[test]
fn ecies_ciphertext_from_eciespy_decrypts() {
    let v = vectors();
    let secret = hex_of(&v["member"]["privateKeyHex"]);
    let plain =
        brightchat::crypto::ecies_decrypt(&secret, &b64_of(&v["ecies"]["ciphertextBase64"]))
            .expect("decrypts");
    assert_eq!(
        String::from_utf8(plain).expect("utf-8"),
        v["ecies"]["plaintext"].as_str().expect("text")
    );
}

#[test]
fn aes_gcm_message_decrypts_with_the_message_id_as_aad() {
    let v = vectors();
    let key: [u8; 32] = hex_of(&v["aesGcmMessage"]["keyHex"])
        .try_into()
        .expect("32 bytes");
    let aad = v["aesGcmMessage"]["messageId"]
        .as_str()
        .expect("id")
        .as_bytes();
    let data = b64_of(&v["aesGcmMessage"]["encryptedContentBase64"]);
    let plain = brightchat::crypto::open(&key, aad, &data).expect("decrypts");
    assert_eq!(
        plain,
        v["aesGcmMessage"]["plaintext"]
            .as_str()
            .expect("text")
            .as_bytes()
    );
    assert!(brightchat::crypto::open(&key, b"another-id", &data).is_err());
}

#[test]
fn wrapped_epoch_key_unwraps() {
    let v = vectors();
    let secret = hex_of(&v["member"]["privateKeyHex"]);
    let key = brightchat::crypto::ecies_decrypt(
        &secret,
        &b64_of(&v["wrappedEpochKey"]["encryptedKeyBase64"]),
    )
    .expect("unwraps");
    assert_eq!(key, hex_of(&v["wrappedEpochKey"]["keyHex"]));
}

#[test]
fn login_signatures_verify_in_both_encodings() {
    let v = vectors();
    let sig = &v["loginSignature"];
    let public = hex_of(&sig["publicKey"]);
    let challenge = hex_of(&sig["challengeHex"]);
    assert!(brightchat::crypto::verify_signature(
        &public,
        &challenge,
        &hex_of(&sig["derHex"])
    ));
    assert!(brightchat::crypto::verify_signature(
        &public,
        &challenge,
        &hex_of(&sig["compactHex"])
    ));
    let mut wrong = challenge.clone();
    wrong[0] ^= 1;
    assert!(!brightchat::crypto::verify_signature(
        &public,
        &wrong,
        &hex_of(&sig["derHex"])
    ));
}

#[test]
fn our_formats_are_read_by_an_independent_decoder() {
    // Our ECIES output is the `ecies` crate's default format; our AES-GCM output is
    // nonce || ciphertext || tag, which aes-gcm reads directly.
    use aes_gcm::aead::{Aead, KeyInit, Payload};
    let v = vectors();
    let secret = hex_of(&v["member"]["privateKeyHex"]);
    let public = hex_of(&v["member"]["publicKeyCompressedHex"]);
    let ct = brightchat::crypto::ecies_encrypt(&public, b"hello").expect("encrypt");
    assert_eq!(ct[0], 0x04, "65-byte uncompressed ephemeral key first");
    assert_eq!(ecies::decrypt(&secret, &ct).expect("decrypt"), b"hello");

    let key = [3u8; 32];
    let sealed = brightchat::crypto::seal(&key, b"msg-id", b"hello").expect("seal");
    let cipher = aes_gcm::Aes256Gcm::new_from_slice(&key).expect("key");
    let nonce: [u8; 12] = sealed[..12].try_into().expect("nonce");
    let plain = cipher
        .decrypt(
            &aes_gcm::Nonce::from(nonce),
            Payload {
                msg: &sealed[12..],
                aad: b"msg-id",
            },
        )
        .expect("decrypt");
    assert_eq!(plain, b"hello");
}

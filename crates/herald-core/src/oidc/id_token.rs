//! ID tokens: the issuer's keys (JWKS), signature and claim verification (RS256 or ES256), and
//! the Herald role the verified claims give.

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD as B64};
use chrono::{DateTime, Utc};
use ring::signature;
use serde::Deserialize;
use serde_json::Value;

use crate::{
    error::{ApiError, ErrorCode},
    user::Role,
};

/// The provider's signing keys.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Jwks {
    pub keys: Vec<Jwk>,
}

/// One public key (RSA or P-256 EC).
#[derive(Debug, Clone, Deserialize)]
pub struct Jwk {
    pub kty: String,
    #[serde(default)]
    pub kid: Option<String>,
    #[serde(default)]
    pub n: Option<String>,
    #[serde(default)]
    pub e: Option<String>,
    #[serde(default)]
    pub crv: Option<String>,
    #[serde(default)]
    pub x: Option<String>,
    #[serde(default)]
    pub y: Option<String>,
}

/// Why an ID token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdTokenError {
    #[error("the ID token is malformed")]
    Malformed,
    #[error("the ID token is signed with {0:?}, which Herald does not accept")]
    Algorithm(String),
    /// Fetch the keys again and retry once: the provider may have rotated them.
    #[error("the ID token is signed with a key the issuer does not list")]
    UnknownKey,
    #[error("the ID token's signature does not hold")]
    BadSignature,
    #[error("the ID token {0}")]
    Claim(&'static str),
}

impl From<IdTokenError> for ApiError {
    fn from(err: IdTokenError) -> Self {
        ApiError::new(ErrorCode::Unauthorized, format!("single sign-on failed: {err}"))
    }
}

/// The verified claims of an ID token that Herald reads.
#[derive(Debug, Clone, PartialEq)]
pub struct IdClaims {
    pub subject: String,
    pub email: Option<String>,
    pub email_verified: bool,
    pub name: Option<String>,
    /// Every claim, for the role.
    pub all: Value,
}

/// How much a token's times may be off the clock.
const LEEWAY_SECONDS: i64 = 60;

/// Verifies `token`'s signature against `keys` and its claims against the issuer, the client,
/// the sign-in's nonce and `now`.
pub fn verify_id_token(
    token: &str,
    keys: &Jwks,
    issuer: &str,
    client_id: &str,
    nonce: &str,
    now: DateTime<Utc>,
) -> Result<IdClaims, IdTokenError> {
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(sig), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(IdTokenError::Malformed);
    };
    let header: Value = serde_json::from_slice(&B64.decode(header).map_err(|_| IdTokenError::Malformed)?)
        .map_err(|_| IdTokenError::Malformed)?;
    let sig = B64.decode(sig).map_err(|_| IdTokenError::Malformed)?;
    let alg = header["alg"].as_str().unwrap_or_default();
    let kid = header["kid"].as_str();
    let (kty, algorithm): (&str, &dyn signature::VerificationAlgorithm) = match alg {
        "RS256" => ("RSA", &signature::RSA_PKCS1_2048_8192_SHA256),
        "ES256" => ("EC", &signature::ECDSA_P256_SHA256_FIXED),
        other => return Err(IdTokenError::Algorithm(other.to_owned())),
    };
    let candidates: Vec<&Jwk> =
        keys.keys.iter().filter(|k| k.kty == kty && (kid.is_none() || k.kid.as_deref() == kid)).collect();
    if candidates.is_empty() {
        return Err(IdTokenError::UnknownKey);
    }
    let message = &token.as_bytes()[..header_and_payload_len(token)];
    let verified = candidates.iter().any(|k| {
        public_key(k).is_some_and(|key| signature::UnparsedPublicKey::new(algorithm, key).verify(message, &sig).is_ok())
    });
    if !verified {
        return Err(IdTokenError::BadSignature);
    }
    let claims: Value = serde_json::from_slice(&B64.decode(payload).map_err(|_| IdTokenError::Malformed)?)
        .map_err(|_| IdTokenError::Malformed)?;
    if claims["iss"].as_str() != Some(issuer) {
        return Err(IdTokenError::Claim("is from another issuer"));
    }
    let audience_ok = match &claims["aud"] {
        Value::String(aud) => aud == client_id,
        Value::Array(auds) => auds.iter().any(|a| a.as_str() == Some(client_id)),
        _ => false,
    };
    if !audience_ok {
        return Err(IdTokenError::Claim("is for another client"));
    }
    // With several audiences the token must name this client as the party it was issued to.
    if claims["aud"].as_array().is_some_and(|a| a.len() > 1) && claims["azp"].as_str() != Some(client_id) {
        return Err(IdTokenError::Claim("names this client among others but not as its authorized party"));
    }
    let t = now.timestamp();
    if claims["exp"].as_i64().is_none_or(|exp| exp.saturating_add(LEEWAY_SECONDS) <= t) {
        return Err(IdTokenError::Claim("has expired"));
    }
    if claims["iat"].as_i64().is_some_and(|iat| iat.saturating_sub(LEEWAY_SECONDS) > t) {
        return Err(IdTokenError::Claim("was issued in the future"));
    }
    if claims["nonce"].as_str() != Some(nonce) {
        return Err(IdTokenError::Claim("belongs to another sign-in (nonce)"));
    }
    let subject = claims["sub"]
        .as_str()
        .filter(|s| !s.is_empty() && s.len() <= 255)
        .ok_or(IdTokenError::Claim("has no subject"))?;
    Ok(IdClaims {
        subject: subject.to_owned(),
        email: claims["email"].as_str().map(str::to_owned),
        email_verified: claims["email_verified"].as_bool() == Some(true),
        name: claims["name"].as_str().map(str::to_owned),
        all: claims,
    })
}

fn header_and_payload_len(token: &str) -> usize {
    token.rfind('.').unwrap_or(0)
}

/// A key's public bytes as ring reads them: an RSA key as DER `RSAPublicKey` (n, e), a P-256
/// key as an uncompressed point.
fn public_key(k: &Jwk) -> Option<Vec<u8>> {
    match k.kty.as_str() {
        "RSA" => {
            let n = B64.decode(k.n.as_deref()?).ok()?;
            let e = B64.decode(k.e.as_deref()?).ok()?;
            Some(rsa_public_key_der(&n, &e))
        }
        "EC" if k.crv.as_deref() == Some("P-256") => {
            let x = B64.decode(k.x.as_deref()?).ok()?;
            let y = B64.decode(k.y.as_deref()?).ok()?;
            (x.len() == 32 && y.len() == 32).then(|| [&[4u8][..], &x, &y].concat())
        }
        _ => None,
    }
}

/// DER `SEQUENCE { INTEGER n, INTEGER e }`.
fn rsa_public_key_der(n: &[u8], e: &[u8]) -> Vec<u8> {
    fn integer(bytes: &[u8]) -> Vec<u8> {
        let trimmed: &[u8] = {
            let start = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len().saturating_sub(1));
            &bytes[start..]
        };
        let mut value = Vec::with_capacity(trimmed.len() + 1);
        if trimmed.first().is_some_and(|&b| b & 0x80 != 0) {
            value.push(0);
        }
        value.extend_from_slice(trimmed);
        tlv(0x02, &value)
    }
    fn tlv(tag: u8, value: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        let len = value.len();
        if len < 0x80 {
            out.push(len as u8);
        } else {
            let bytes: Vec<u8> = len.to_be_bytes().into_iter().skip_while(|&b| b == 0).collect();
            out.push(0x80 | bytes.len() as u8);
            out.extend(bytes);
        }
        out.extend_from_slice(value);
        out
    }
    tlv(0x30, &[integer(n), integer(e)].concat())
}

/// The role the claims give: admin when `role_claim` (a string or a list) holds one of
/// `admin_values`.
pub fn role_of(claims: &IdClaims, role_claim: &str, admin_values: &[String]) -> Role {
    let holds = |v: &Value| v.as_str().is_some_and(|s| admin_values.iter().any(|a| a == s));
    let admin = match &claims.all[role_claim] {
        Value::Array(values) => values.iter().any(holds),
        v => holds(v),
    };
    if admin { Role::Admin } else { Role::User }
}
#[cfg(test)]
mod tests {
    use super::*;
    use ring::{rand::SystemRandom, signature::KeyPair as _};

    fn es256_key() -> (signature::EcdsaKeyPair, Jwk) {
        let rng = SystemRandom::new();
        let pkcs8 =
            signature::EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng).expect("key");
        let pair =
            signature::EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
                .expect("pair");
        let point = pair.public_key().as_ref();
        let jwk = Jwk {
            kty: "EC".into(),
            kid: Some("k1".into()),
            n: None,
            e: None,
            crv: Some("P-256".into()),
            x: Some(B64.encode(&point[1..33])),
            y: Some(B64.encode(&point[33..])),
        };
        (pair, jwk)
    }

    fn sign(pair: &signature::EcdsaKeyPair, kid: &str, claims: &Value) -> String {
        let header = B64.encode(serde_json::json!({"alg": "ES256", "kid": kid}).to_string());
        let input = format!("{header}.{}", B64.encode(claims.to_string()));
        let sig = pair.sign(&SystemRandom::new(), input.as_bytes()).expect("sign");
        format!("{input}.{}", B64.encode(sig.as_ref()))
    }

    #[test]
    fn id_tokens_are_checked_whole() {
        let (pair, jwk) = es256_key();
        let keys = Jwks { keys: vec![jwk] };
        let now = Utc::now();
        let good = serde_json::json!({"iss": "https://id.example", "aud": "herald", "sub": "u1", "nonce": "n",
            "exp": now.timestamp() + 300, "iat": now.timestamp(), "email": "a@example.org", "email_verified": true,
            "groups": ["staff", "herald-admin"]});
        let verify = |token: &str| verify_id_token(token, &keys, "https://id.example", "herald", "n", now);
        let claims = verify(&sign(&pair, "k1", &good)).expect("verified");
        assert_eq!((claims.subject.as_str(), claims.email_verified), ("u1", true));
        assert_eq!(role_of(&claims, "groups", &["herald-admin".into()]), Role::Admin);
        assert_eq!(role_of(&claims, "groups", &["ops".into()]), Role::User);
        assert_eq!(role_of(&claims, "role", &["herald-admin".into()]), Role::User);

        let with = |key: &str, value: Value| {
            let mut c = good.clone();
            c[key] = value;
            sign(&pair, "k1", &c)
        };
        assert_eq!(verify(&with("iss", "https://evil".into())), Err(IdTokenError::Claim("is from another issuer")));
        assert_eq!(verify(&with("aud", "other".into())), Err(IdTokenError::Claim("is for another client")));
        assert!(verify(&with("aud", serde_json::json!(["herald"]))).is_ok());
        let several = with("aud", serde_json::json!(["other", "herald"]));
        assert!(matches!(verify(&several), Err(IdTokenError::Claim(_))), "several audiences need azp");
        let mut c = good.clone();
        (c["aud"], c["azp"]) = (serde_json::json!(["other", "herald"]), "herald".into());
        assert!(verify(&sign(&pair, "k1", &c)).is_ok());
        assert_eq!(verify(&with("exp", (now.timestamp() - 61).into())), Err(IdTokenError::Claim("has expired")));
        assert_eq!(verify(&with("nonce", "m".into())), Err(IdTokenError::Claim("belongs to another sign-in (nonce)")));
        assert_eq!(verify(&sign(&pair, "k2", &good)), Err(IdTokenError::UnknownKey), "a rotated key");
        let (other, _) = es256_key();
        assert_eq!(verify(&sign(&other, "k1", &good)), Err(IdTokenError::BadSignature));
        let token = sign(&pair, "k1", &good);
        let (head, _) = token.split_once('.').expect("parts");
        let none = format!("{}.{}.", B64.encode(r#"{"alg":"none"}"#), token.split('.').nth(1).expect("payload"));
        assert_eq!(verify(&none), Err(IdTokenError::Algorithm("none".into())));
        let hs = format!("{}.{}", B64.encode(r#"{"alg":"HS256","kid":"k1"}"#), &token[head.len() + 1..]);
        assert_eq!(verify(&hs), Err(IdTokenError::Algorithm("HS256".into())));
        assert_eq!(verify("a.b"), Err(IdTokenError::Malformed));
    }

    /// A 2048-bit RSA test key (PKCS#1 DER, base64) and its modulus (base64url), made with
    /// `openssl genpkey -algorithm RSA`: ring verifies RS256 but does not make RSA keys.
    const RSA_PKCS1: &[&str] = &[
        "MIIEoAIBAAKCAQEAossBTwHk89V/hR57yMz7rc1D/V+GynWp7yrEbcjq6jrwDgrugcf27fA6fW0C+i6GRIexcArK69OfUfB4",
        "auv2776nee+IRzBjSlHtZWwUOzKKqMq6wXLD9DcqsP0MxVq375iMHiQ963vt3Wmhs6J4eM5VjINqsHUqqaN1FajErc+EMpya",
        "ZraO62/BPBUiqmZJh2V07CM213B5WGSqRacQxCXVTwVFd1uFWjoS0v0J6RKT15u8k2pTKrnIvz+asOvoHDuA4ZdPgOmCCXk2",
        "oQXYQVu0eN5iGG/YHrFiAGVfPYefrBENYUtiTw/xybVnwnA84FEbbtPiFdZOOqTz2bh40wIDAQABAoH/G+TRg1CIq4AkiEMg",
        "pXpJXHxwA1WmHmQvgyLvVKuQeI3+NpJn7kKkcH41Fa5RAwMSO4tV6jQwO6H4+dpxQZe7PDit0xRakKtywZR47kNj1pg6CZGG",
        "ereG1/IyTC2Bp0MfCFqK5K+F5Hg1JzcQzTrzNLvlHXmwRh5XkIzxhQOMn4iGr7ZQRAJh90mvvDYcfjQ8mHO73zVtqIinXSNm",
        "m2WxaEBsPM4yrvgy/r8l48PaX6jGURfrCaawluUWeZ08rsXAQJ2iOtDyhsGift1MfncDtKBxrELgqmkjxGDtC1MjSvVK14hA",
        "MyRJ3XxvSCEX/Ebs2GPcXmqH+DFrrOdKYaSpAoGBAM5vrh1C+ric+91ZBFNwofGwEwtvGGdfOYHWLzHdy7YkzeXJQ1Nc3Adq",
        "BqPuHf14WN/rODfL0LYJsPo63G4VKSThwSk/Wvhcj4rRzM9AlQZrqAftJK5nInQXTYKJtQqEPANu1uSuZRezL6fIHsfWm5c8",
        "Q6V46bMUs3iO1Id67lN7AoGBAMng2hwARNw9kgifKE77hx0HaPIWsK7lg79GGOwop0FcvKZ+6eC0x1I8M1bM1IHhfAV9iCzM",
        "JuZAOMbkhdU7x9PlkTF9PfJkeIWEtIFagGEe5N7nrEyZJ838Zf0MRNRK3k/qakxaXU3zHI8UBSv3SNMnAbKP7VyB+0WaLLPM",
        "KaSJAoGAJplfNv11H9vKhELGuktPHH/Nr8+gAoQdnpdLz8km8/HBxftx6T5trb03bKNzXBeKlqPGqTgk2ETLoJ4s5TBztv+3",
        "PF0qR1IXTN+Zqg7rTn4GtySyPSHvoUFSLtxMy6CaEBJDgBLTuDC68mZKyxbnlMmh5GjNWby/KgWa25Iyyc0CgYBVTgM8I8z1",
        "N7s2k3Jn9ZdBZ/krmvTr4qYKNCeh2wfZ8cLxo91WC23STQfwnLsLaumKNGJPc7DYSLj1Kml3Ejy9SFtTCzYa7+ORn+LaahCn",
        "eXOC0WiYMXuFair6g62t+zj3kfl67BBTOPCPcQlCa8rFFs1705+cIHy6C4zqKNJL6QKBgGzBMXVXmS9Cd+Ax6cg/cmkUsOJ+",
        "Vk8QG0gdZtARYEf5Ui3OH06y/D53GvJett3+ZNifS9qwhhXtU3fSJyQPOn+kULAwyg9qiGHhJAHpsZOuqSvKZeafpOgt7Bmt",
        "seO3LT+1SPPYquyB1iHDVdfQxXqsHrLvBUXHKgKU8YyFzypv",
    ];
    const RSA_N: &[&str] = &[
        "ossBTwHk89V_hR57yMz7rc1D_V-GynWp7yrEbcjq6jrwDgrugcf27fA6fW0C-i6GRIexcArK69OfUfB4auv2776nee-IRzBj",
        "SlHtZWwUOzKKqMq6wXLD9DcqsP0MxVq375iMHiQ963vt3Wmhs6J4eM5VjINqsHUqqaN1FajErc-EMpyaZraO62_BPBUiqmZJ",
        "h2V07CM213B5WGSqRacQxCXVTwVFd1uFWjoS0v0J6RKT15u8k2pTKrnIvz-asOvoHDuA4ZdPgOmCCXk2oQXYQVu0eN5iGG_Y",
        "HrFiAGVfPYefrBENYUtiTw_xybVnwnA84FEbbtPiFdZOOqTz2bh40w",
    ];

    #[test]
    fn rs256_tokens_verify_against_the_modulus_and_exponent() {
        use base64::engine::general_purpose::STANDARD;
        let der = STANDARD.decode(RSA_PKCS1.concat()).expect("base64");
        let pair = signature::RsaKeyPair::from_der(&der).expect("an RSA key");
        let jwk = Jwk {
            kty: "RSA".into(),
            kid: Some("r1".into()),
            n: Some(RSA_N.concat()),
            e: Some("AQAB".into()),
            crv: None,
            x: None,
            y: None,
        };
        assert_eq!(public_key(&jwk).as_deref(), Some(pair.public().as_ref()), "the DER ring reads");
        let now = Utc::now();
        let claims = serde_json::json!({"iss": "https://id.example", "aud": "herald", "sub": "u1", "nonce": "n",
            "exp": now.timestamp() + 300});
        let header = B64.encode(serde_json::json!({"alg": "RS256", "kid": "r1"}).to_string());
        let input = format!("{header}.{}", B64.encode(claims.to_string()));
        let mut sig = vec![0; pair.public().modulus_len()];
        pair.sign(&signature::RSA_PKCS1_SHA256, &SystemRandom::new(), input.as_bytes(), &mut sig).expect("sign");
        let token = format!("{input}.{}", B64.encode(&sig));
        let keys = Jwks { keys: vec![jwk] };
        assert!(verify_id_token(&token, &keys, "https://id.example", "herald", "n", now).is_ok());
        let mut bad = sig.clone();
        bad[10] ^= 1;
        let forged = format!("{input}.{}", B64.encode(&bad));
        assert_eq!(
            verify_id_token(&forged, &keys, "https://id.example", "herald", "n", now),
            Err(IdTokenError::BadSignature)
        );
    }
}

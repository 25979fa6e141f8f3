use super::*;
use crate::model::CreateRequest;
use crate::providers::http::reply;
use ring::signature::KeyPair;
use serde_json::json;

fn ok(body: &str) -> Reply {
    reply(200, body)
}

fn body(key: &str, req: &CreateRequest, image: Option<&str>) -> Value {
    let img = image.map(|u| ImageInput::Url(u.to_string()));
    let s = crate::providers::submission(key, req, img.as_ref(), None, None);
    serde_json::to_value(create_body(&s, image.map(String::from), None, Vec::new()).unwrap())
        .unwrap()
}

#[test]
fn every_model_has_an_endpoint_and_the_declared_shape() {
    let models = models();
    assert!(models.len() >= 3);
    for m in &models {
        let e = endpoint(&m.model).unwrap_or_else(|| panic!("{} has no endpoint", m.model));
        assert_eq!(
            m.text_to_video,
            e.text.is_some() && !m.image_optional,
            "{}",
            m.model
        );
        assert_eq!(m.references.is_some(), e.reference.is_some(), "{}", m.model);
        assert!(m.note.as_deref().unwrap().contains("public"), "{}", m.model);
        assert!(m.cancel && m.explicit_defaults, "{}", m.model);
        assert!(
            m.durations.contains(&m.default_duration),
            "{}: default duration",
            m.model
        );
        // A price is either first-hand (an llms.txt URL) or unset, saying so.
        if m.price.is_known() {
            assert!(m.price.source.contains("llms.txt"), "{}", m.model);
        } else {
            assert!(m.price.source.contains("not confirmed"), "{}", m.model);
        }
    }
}

#[test]
fn wan22_sends_frames_for_the_duration_and_only_what_was_asked() {
    let req = CreateRequest {
        prompt: "p".into(),
        duration_seconds: Some(10),
        negative_prompt: Some("blur".into()),
        ..CreateRequest::default()
    };
    assert_eq!(
        body("fal/wan2.2-i2v-a14b", &req, Some("https://x.test/a.png")),
        json!({"prompt": "p", "image_url": "https://x.test/a.png", "negative_prompt": "blur",
               "resolution": "720p", "num_frames": 161, "frames_per_second": 16})
    );
    // The turbo takes no duration and no negative prompt.
    assert_eq!(
        body(
            "fal/wan2.2-i2v-a14b-turbo",
            &CreateRequest {
                prompt: "p".into(),
                seed: Some(0),
                ..CreateRequest::default()
            },
            Some("https://x.test/a.png")
        ),
        json!({"prompt": "p", "image_url": "https://x.test/a.png", "resolution": "720p", "seed": 0})
    );
}

#[test]
fn durations_are_strings_on_25_and_26_and_integers_on_27_and_30() {
    let req = CreateRequest {
        prompt: "p".into(),
        duration_seconds: Some(10),
        ..CreateRequest::default()
    };
    let img = Some("https://x.test/a.png");
    assert_eq!(body("fal/wan2.5-i2v", &req, img)["duration"], json!("10"));
    assert_eq!(body("fal/wan2.6-i2v", &req, img)["duration"], json!("10"));
    assert_eq!(body("fal/wan2.7-i2v", &req, img)["duration"], json!(10));
    let w3 = body("fal/wan3.0", &req, img);
    assert_eq!((&w3["duration"], &w3["audio"]), (&json!(10), &json!(false)));
    // `auto` is not sent to Wan 3.0 (its value for it is unconfirmed); others go as given.
    let auto = CreateRequest {
        aspect_ratio: Some(AspectRatio::Auto),
        ..req.clone()
    };
    assert!(body("fal/wan3.0", &auto, img).get("aspect_ratio").is_none());
    assert_eq!(
        body("fal/wan2.2-i2v-a14b", &auto, img)["aspect_ratio"],
        json!("auto")
    );
}

#[test]
fn wan3_picks_its_endpoint_by_mode() {
    let req = CreateRequest {
        prompt: "p".into(),
        ..CreateRequest::default()
    };
    let img = ImageInput::Url("https://x.test/a.png".into());
    let with_image = crate::providers::submission("fal/wan3.0", &req, Some(&img), None, None);
    assert_eq!(
        endpoint_for(&with_image).unwrap(),
        "alibaba/wan-3.0/image-to-video"
    );
    let text = crate::providers::submission("fal/wan3.0", &req, None, None, None);
    assert_eq!(
        endpoint_for(&text).unwrap(),
        "alibaba/wan-3.0/text-to-video"
    );
    let refs = [Reference::Video("https://x.test/v.mp4".into())];
    let mut r = crate::providers::submission("fal/wan3.0", &req, None, None, None);
    r.references = &refs;
    assert_eq!(
        endpoint_for(&r).unwrap(),
        "alibaba/wan-3.0/reference-to-video"
    );
    // An image-to-video model without an image, and references where none are taken.
    let none = crate::providers::submission("fal/wan2.7-i2v", &req, None, None, None);
    assert_eq!(
        endpoint_for(&none).unwrap_err().category,
        Category::InvalidInput
    );
    let mut r = crate::providers::submission("fal/wan2.7-i2v", &req, Some(&img), None, None);
    r.references = &refs;
    assert_eq!(
        endpoint_for(&r).unwrap_err().category,
        Category::Unsupported
    );
}

#[test]
fn submit_answers_keep_the_urls_fal_gave() {
    let r = ok(
        r#"{"request_id":"r1","status_url":"https://queue.fal.run/fal-ai/wan/requests/r1/status","response_url":"https://queue.fal.run/fal-ai/wan/requests/r1","cancel_url":"https://queue.fal.run/fal-ai/wan/requests/r1/cancel","queue_position":0}"#,
    );
    let h = parse_submit(&r).unwrap();
    assert_eq!(
        h.status_url,
        "https://queue.fal.run/fal-ai/wan/requests/r1/status"
    );
    assert_eq!(Handle::decode(&h.encode()).unwrap(), h);
    // A 2xx without the URLs may still have queued a request: submit_unknown, never resent.
    for b in [r#"{"request_id":"r1"}"#, "{\"request_id\":", ""] {
        let pe = parse_submit(&ok(b)).unwrap_err();
        assert_eq!(pe.acceptance, Acceptance::Unknown, "{b}");
        assert_eq!(pe.error.category, Category::SubmitUnknown, "{b}");
    }
    assert!(Handle::decode("r1").is_err());
}

#[test]
fn refusals_map_to_categories() {
    let cases: &[(u16, &str, Category, Acceptance)] = &[
        (
            401,
            r#"{"detail":"Invalid Key"}"#,
            Category::Auth,
            Acceptance::Rejected,
        ),
        (
            403,
            r#"{"detail":"User is locked. Reason: Exhausted balance."}"#,
            Category::Credits,
            Acceptance::Rejected,
        ),
        (
            403,
            r#"{"detail":"Forbidden"}"#,
            Category::Auth,
            Acceptance::Rejected,
        ),
        (
            404,
            r#"{"detail":"Application not found"}"#,
            Category::NotFound,
            Acceptance::Rejected,
        ),
        (
            422,
            r#"{"detail":[{"loc":["body","prompt"],"msg":"field required","type":"value_error.missing"}]}"#,
            Category::InvalidInput,
            Acceptance::Rejected,
        ),
        (
            429,
            r#"{"detail":"Too many requests"}"#,
            Category::RateLimited,
            Acceptance::Rejected,
        ),
        (
            500,
            r#"{"detail":"Internal Server Error"}"#,
            Category::ProviderUnavailable,
            Acceptance::Unknown,
        ),
        (
            502,
            "<html>bad gateway</html>",
            Category::ProviderUnavailable,
            Acceptance::Unknown,
        ),
    ];
    for (status, b, category, acceptance) in cases {
        let pe = parse_submit(&reply(*status, b)).unwrap_err();
        assert_eq!(pe.error.category, *category, "{status} {b}");
        assert_eq!(pe.acceptance, *acceptance, "{status} {b}");
        assert!(pe.error.next_step.is_some(), "{status}: no next step");
    }
    let pe = parse_submit(&reply(422, cases[4].1)).unwrap_err();
    assert!(
        pe.error.message.contains("body.prompt: field required"),
        "{}",
        pe.error.message
    );
    // The error type comes from the body or the X-Fal-Error-Type header; 429 keeps Retry-After.
    let mut r = reply(429, r#"{"detail":"slow down"}"#);
    r.headers.insert("retry-after", "4".parse().unwrap());
    r.headers
        .insert("x-fal-error-type", "rate_limited".parse().unwrap());
    let pe = parse_submit(&r).unwrap_err();
    assert_eq!(pe.retry_after, Some(Duration::from_secs(4)));
    assert!(pe.create_may_retry());
    assert!(pe.error.message.contains("(error type rate_limited)"));
    // X-Fal-Retryable on a 5xx create is a hint only: never a resend.
    let mut r = reply(503, r#"{"detail":"overloaded"}"#);
    r.headers.insert("x-fal-retryable", "true".parse().unwrap());
    let pe = parse_submit(&r).unwrap_err();
    assert!(!pe.create_may_retry());
    assert!(
        pe.error.message.contains("not resent"),
        "{}",
        pe.error.message
    );
    // A failed upload created nothing, whatever its status: the create may be tried again.
    for status in [500, 503, 422, 401] {
        let pe = refusal(
            &reply(status, r#"{"detail":"storage down"}"#),
            Stage::Upload,
        );
        assert_eq!(pe.acceptance, Acceptance::Rejected, "{status}");
    }
    // A content-policy 4xx is a failed generation.
    let r = reply(
        422,
        r#"{"detail":"flagged","error_type":"content_policy_violation"}"#,
    );
    assert_eq!(
        parse_submit(&r).unwrap_err().error.category,
        Category::GenerationFailed
    );
}

#[test]
fn statuses_and_results() {
    let q = parse_status(&ok(
        r#"{"status":"IN_QUEUE","queue_position":3,"response_url":"u"}"#,
    ))
    .unwrap()
    .unwrap();
    assert_eq!(q.status, Status::Queued);
    assert_eq!(queue_position(&q), Some("3"));
    let p = parse_status(&ok(r#"{"status":"IN_PROGRESS","logs":null}"#))
        .unwrap()
        .unwrap();
    assert_eq!(p.status, Status::Running);
    assert!(
        parse_status(&ok(r#"{"status":"COMPLETED","logs":null,"metrics":{}}"#))
            .unwrap()
            .is_none()
    );
    let f = parse_status(&ok(
        r#"{"status":"COMPLETED","error":"NSFW content","error_type":"content_policy"}"#,
    ))
    .unwrap()
    .unwrap();
    assert_eq!(f.status, Status::Failed);
    let e = f.error.unwrap();
    assert_eq!(e.category, Category::GenerationFailed);
    assert!(
        e.message.contains("(content_policy): NSFW content"),
        "{}",
        e.message
    );
    let u = parse_status(&ok(r#"{"status":"WARMING_UP"}"#))
        .unwrap()
        .unwrap();
    assert_eq!(u.status, Status::Running);
    assert_eq!(
        parse_status(&reply(404, r#"{"detail":"gone"}"#))
            .unwrap_err()
            .error
            .category,
        Category::NotFound
    );

    let s = parse_result(&ok(r#"{"video":{"url":"https://v3.fal.media/files/x.mp4","content_type":"video/mp4"},"seed":1}"#)).unwrap();
    assert_eq!(
        (s.status, s.video_url.as_deref()),
        (Status::Succeeded, Some("https://v3.fal.media/files/x.mp4"))
    );
    let s = parse_result(&ok(r#"{"seed":1}"#)).unwrap();
    assert_eq!(s.status, Status::Failed);
    // The failed request's own 422: final; a 5xx: polling goes on.
    let s = parse_result(&reply(
        422,
        r#"{"detail":[{"loc":["body","image_url"],"msg":"could not read the image"}]}"#,
    ))
    .unwrap();
    assert_eq!(s.status, Status::Failed);
    assert!(
        s.error
            .unwrap()
            .message
            .contains("body.image_url: could not read the image")
    );
    assert!(parse_result(&reply(500, "oops")).is_err());
    assert!(parse_result(&ok("<html>")).is_err());
}

#[test]
fn cancel_answers() {
    assert!(matches!(
        parse_cancel(&reply(202, r#"{"status":"CANCELLATION_REQUESTED"}"#)).unwrap(),
        CancelOutcome::Cancelled
    ));
    for r in [
        reply(400, r#"{"status":"ALREADY_COMPLETED"}"#),
        reply(200, r#"{"status":"ALREADY_COMPLETED"}"#),
        reply(404, ""),
    ] {
        match parse_cancel(&r).unwrap() {
            CancelOutcome::NotCancelled(why) => {
                assert!(why.contains("only while it waits in the queue"), "{why}")
            }
            CancelOutcome::Cancelled => panic!("a refused cancel read as done"),
        }
    }
    assert!(parse_cancel(&reply(500, "")).is_err());
}

#[test]
fn only_urls_on_the_queue_host_get_the_key() {
    assert!(same_origin(
        "https://queue.fal.run/fal-ai/wan/requests/r/status",
        DEFAULT_QUEUE
    ));
    assert!(!same_origin(
        "https://evil.test/fal-ai/wan/requests/r/status",
        DEFAULT_QUEUE
    ));
    assert!(!same_origin("http://queue.fal.run/x", DEFAULT_QUEUE));
    assert!(!same_origin(
        "https://queue.fal.run.evil.test/x",
        DEFAULT_QUEUE
    ));
    assert!(!same_origin("not a url", DEFAULT_QUEUE));
}

fn key() -> ring::signature::Ed25519KeyPair {
    ring::signature::Ed25519KeyPair::from_seed_unchecked(&[3; 32]).unwrap()
}

fn headers(rid: &str, ts: &str, sig: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("x-fal-webhook-request-id", rid.parse().unwrap());
    h.insert("x-fal-webhook-user-id", "u1".parse().unwrap());
    h.insert("x-fal-webhook-timestamp", ts.parse().unwrap());
    h.insert("x-fal-webhook-signature", sig.parse().unwrap());
    h
}

#[test]
fn webhook_signatures() {
    let body = br#"{"request_id":"r1","status":"OK"}"#;
    let now = 1_800_000_000_i64;
    let ts = now.to_string();
    let sig = hex::encode(key().sign(&signed_message("r1", "u1", &ts, body)).as_ref());
    let public = key().public_key().as_ref().to_vec();
    // The message is exactly fal's four lines.
    let digest = hex::encode(sha2::Sha256::digest(body));
    assert_eq!(
        signed_message("r1", "u1", &ts, body),
        format!("r1\nu1\n{ts}\n{digest}").into_bytes()
    );

    let keys = vec![vec![0u8; 32], public.clone()];
    assert!(check_signature(&headers("r1", &ts, &sig), body, &keys, now).is_ok());
    assert!(check_signature(&headers("r1", &ts, &sig), body, &keys, now + 300).is_ok());
    for (h, b, at, why) in [
        (headers("r1", &ts, &sig), &b"{}"[..], now, "does not verify"),
        (headers("r2", &ts, &sig), &body[..], now, "does not verify"),
        (
            headers("r1", &ts, &sig),
            &body[..],
            now + 301,
            "more than 300 s",
        ),
        (
            headers("r1", &ts, &sig),
            &body[..],
            now - 301,
            "more than 300 s",
        ),
        (headers("r1", &ts, "zz"), &body[..], now, "not hex"),
        (headers("r1", "soon", &sig), &body[..], now, "not a number"),
        (HeaderMap::new(), &body[..], now, "is missing"),
    ] {
        let e = check_signature(&h, b, &keys, at).unwrap_err();
        assert_eq!(e.category, Category::Auth);
        assert!(e.message.contains(why), "{why}: {}", e.message);
    }
    assert!(check_signature(&headers("r1", &ts, &sig), body, &[vec![0u8; 32]], now).is_err());

    // JWKS `x` is base64url, padded or not; non-Ed25519 sizes are skipped.
    use base64::Engine;
    let x = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&public);
    let jwks = json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": format!("{x}=")}, {"kty": "RSA", "n": "AQAB"}]});
    assert_eq!(
        jwks_keys(jwks.to_string().as_bytes()).unwrap(),
        vec![public]
    );
    assert!(jwks_keys(br#"{"keys":[]}"#).is_err());
    assert!(jwks_keys(b"nope").is_err());
}

#[test]
fn overridden_base_urls_serve_storage_and_the_jwks() {
    let cfg = |base: &str| ProviderConfig {
        api_key: Some("k".to_string().into()),
        base_url: base.into(),
        timeout: Duration::from_secs(5),
        rate_limit: Default::default(),
        allow_retired: false,
        auth: DECL.auth,
        no_key: String::new(),
    };
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(&dir.path().join("j.sqlite")).unwrap();
    let c = Client::new(
        &cfg(DEFAULT_QUEUE),
        http::client().unwrap(),
        journal.clone(),
    );
    assert_eq!(
        (c.rest.base_url(), c.jwks_url.as_str()),
        (DEFAULT_REST, DEFAULT_JWKS)
    );
    let c = Client::new(
        &cfg("http://127.0.0.1:9/"),
        http::client().unwrap(),
        journal,
    );
    assert_eq!(c.rest.base_url(), "http://127.0.0.1:9");
    assert_eq!(c.jwks_url, "http://127.0.0.1:9/.well-known/jwks.json");
}

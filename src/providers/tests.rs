//! Tests that name providers and models: they live here so that the modules under test name none.

mod catalog {
    use crate::catalog::*;
    use crate::model::ProviderId;

    #[test]
    fn every_provider_has_a_model_and_defaults_are_in_range() {
        for &p in ProviderId::ALL {
            assert_eq!(default_model(p).provider, p);
        }
        for m in models() {
            assert!(m.resolutions.contains(&m.default_resolution), "{}", m.key());
            assert!(m.durations.contains(&m.default_duration), "{}", m.key());
            assert!(!m.price.source.is_empty());
        }
    }

    #[test]
    fn unpublished_prices_are_null_with_a_reason() {
        for key in [
            "novita/wan2.1-i2v",
            "novita/wan2.6-i2v",
            "apikley/wan2.2-i2v-a14b-turbo",
        ] {
            let m = find_key(key).unwrap();
            assert!(!m.price.is_known(), "{key}");
            assert!(m.price.source.contains("[pricing"), "{key}");
        }
        assert_eq!(
            find_key("piapi/wan2.1-i2v-14b")
                .unwrap()
                .price
                .usd_per_video,
            Some(0.28)
        );
        assert_eq!(
            find_key("local/camera-preview")
                .unwrap()
                .price
                .usd_per_video,
            Some(0.0)
        );
    }
}

mod retired {
    use crate::catalog::*;
    use crate::config::tests::{defaults, env};
    use crate::config::*;
    use crate::error::Category;
    use crate::model::ProviderId;

    #[test]
    fn novita_defaults_to_wan27_and_dates_its_retired_models() {
        assert_eq!(default_model(ProviderId::Novita).model, "wan2.7-i2v");
        assert!(default_model(ProviderId::Novita).retired_on.is_none());
        let m21 = find_key("novita/wan2.1-i2v").unwrap();
        assert_eq!(m21.retired_on.as_deref(), Some("2026-08-19"));
        assert_eq!(m21.replacement.as_deref(), Some("novita/wan2.7-i2v"));
        let m26 = find_key("novita/wan2.6-i2v").unwrap();
        assert_eq!(m26.retired_on.as_deref(), Some("2026-09-30"));
        assert!(m26.replacement.as_deref().unwrap().contains("Kling 3.0"));
        let v = serde_json::to_value(m26).unwrap();
        assert_eq!(v["retired_on"], "2026-09-30");
        let v = serde_json::to_value(find_key("novita/wan2.7-i2v").unwrap()).unwrap();
        assert!(v.get("retired_on").is_none() && v.get("replacement").is_none());
        assert!(who_supports(|m| m.key() == "novita/wan2.6-i2v").contains("(retired 2026-09-30)"));
    }

    #[test]
    fn refused_unless_allowed_by_file_or_env() {
        let m21 = find_key("novita/wan2.1-i2v").unwrap();
        let e = defaults().check_retired(m21).unwrap_err();
        assert_eq!(e.category, Category::Unsupported);
        assert!(e.message.contains("2026-08-19"), "{}", e.message);
        assert!(e.message.contains("novita/wan2.7-i2v"), "{}", e.message);
        assert!(
            e.next_step
                .unwrap()
                .contains("I2V_MCP_NOVITA_ALLOW_RETIRED"),
        );
        assert!(
            defaults()
                .check_retired(find_key("novita/wan2.7-i2v").unwrap())
                .is_ok()
        );

        let file: FileConfig =
            toml::from_str("[providers.novita]\nallow_retired = true\n").unwrap();
        let c = Config::from_layers(file, None, &Overrides::default(), &env(&[])).unwrap();
        assert!(c.check_retired(m21).is_ok());
        let file: FileConfig =
            toml::from_str("[providers.novita]\nallow_retired = true\n").unwrap();
        let e = env(&[("I2V_MCP_NOVITA_ALLOW_RETIRED", "false")]);
        let c = Config::from_layers(file, None, &Overrides::default(), &e).unwrap();
        assert!(c.check_retired(m21).is_err(), "env wins over the file");
        let e = env(&[("I2V_MCP_NOVITA_ALLOW_RETIRED", "maybe")]);
        let err = Config::from_layers(FileConfig::default(), None, &Overrides::default(), &e)
            .unwrap_err();
        assert!(
            err.message.contains("I2V_MCP_NOVITA_ALLOW_RETIRED"),
            "{}",
            err.message
        );
    }
}

mod config {
    use std::path::PathBuf;

    use secrecy::ExposeSecret;

    use crate::config::*;
    use crate::model::ProviderId;

    use crate::config::tests::{defaults, env};

    #[test]
    fn precedence_cli_over_env_over_file() {
        let file: FileConfig = toml::from_str(
            "data_dir = \"/file/data\"\noutput_dir = \"/file/out\"\n[providers.piapi]\napi_key = \"file-key\"\nbase_url = \"http://file\"\n",
        )
        .unwrap();
        let e = env(&[
            ("I2V_MCP_DATA_DIR", "/env/data"),
            ("PIAPI_API_KEY", "env-key"),
        ]);
        let o = Overrides {
            output_dir: Some("/cli/out".into()),
            ..Overrides::default()
        };
        let c = Config::from_layers(file, None, &o, &e).unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/env/data"));
        assert_eq!(c.output_dir, PathBuf::from("/cli/out"));
        let p = c.provider(ProviderId::Piapi).unwrap();
        assert_eq!(p.api_key.as_ref().unwrap().expose_secret(), "env-key");
        assert_eq!(p.base_url, "http://file");
    }

    #[test]
    fn config_errors_never_echo_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        let cases = [
            // Unquoted: a syntax error on the secret's own line.
            ("[providers.piapi]\napi_key = sk-live-SECRET123\n", "line 2"),
            // Quoted but of the wrong type, or in the wrong place.
            ("max_wait_seconds = \"sk-live-SECRET123\"\n", "line 1"),
            (
                "[providers.piapi]\napi_key = [\"sk-live-SECRET123\"]\n",
                "line 2",
            ),
            (
                "[providers.piapi]\napi_key = \"sk-live-SECRET123\n",
                "line 2",
            ),
            (
                "[providers.piapi]\napi_key = \"sk-live-SECRET123\"\napi_key = \"sk-live-SECRET123\"\n",
                "line 3",
            ),
        ];
        for (text, line) in cases {
            std::fs::write(&path, text).unwrap();
            let e = read_file(&path).unwrap_err();
            assert!(
                !e.message.contains("SECRET123"),
                "{text:?} echoed: {}",
                e.message
            );
            assert!(e.message.contains(line), "{text:?}: {}", e.message);
            assert!(e.message.contains("config.toml"), "{}", e.message);
        }
        // What is wrong is still said, by key name.
        std::fs::write(&path, "data_dri = \"/x\"\n").unwrap();
        let e = read_file(&path).unwrap_err();
        assert!(e.message.contains("unknown field"), "{}", e.message);
        assert!(e.message.contains("data_dri"), "{}", e.message);
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let err = toml::from_str::<FileConfig>("data_dri = \"/x\"").unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
        let err = toml::from_str::<FileConfig>("[providers.piapi]\nkey = \"x\"").unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
    }

    #[test]
    fn defaults_never_use_the_working_directory() {
        let c = defaults();
        assert!(c.data_dir.is_absolute());
        assert!(c.output_dir.starts_with(&c.data_dir));
        assert_eq!(
            c.provider(ProviderId::Qubico)
                .unwrap()
                .rate_limit
                .per_minute,
            Some(10)
        );
    }

    #[test]
    fn keys_are_not_in_debug_output() {
        let e = env(&[("NOVITA_API_KEY", "super-secret-value")]);
        let c =
            Config::from_layers(FileConfig::default(), None, &Overrides::default(), &e).unwrap();
        assert!(!format!("{c:?}").contains("super-secret-value"));
        assert!(c.is_configured(ProviderId::Novita));
        assert!(!c.is_configured(ProviderId::Piapi));
    }
}

mod media {

    use base64::Engine;
    use base64::engine::general_purpose::STANDARD as B64;

    use crate::catalog::find_key;
    use crate::error::Category;
    use crate::media::tests::png;
    use crate::media::*;

    #[test]
    fn local_files_are_confined_and_sniffed() {
        let dir = tempfile::tempdir().unwrap();
        let other = tempfile::tempdir().unwrap();
        let allowed = vec![dir.path().to_path_buf()];
        let spec = find_key("piapi/wan2.1-i2v-14b").unwrap();

        let good = dir.path().join("a.png");
        std::fs::write(&good, png(64, 48, false)).unwrap();
        let img = resolve(
            good.to_str().unwrap(),
            "image",
            spec,
            &allowed,
            crate::catalog::models(),
        )
        .unwrap();
        let local = img.as_local().unwrap();
        assert_eq!(
            (local.width, local.height, local.format),
            (64, 48, Format::Png)
        );

        let outside = other.path().join("b.png");
        std::fs::write(&outside, png(8, 8, false)).unwrap();
        let e = resolve(
            outside.to_str().unwrap(),
            "image",
            spec,
            &allowed,
            crate::catalog::models(),
        )
        .unwrap_err();
        assert!(e.message.contains("outside the allowed"), "{}", e.message);

        // A symlink inside the allowed dir pointing outside is refused: symlinks are resolved first.
        let link = dir.path().join("link.png");
        std::os::unix::fs::symlink(&outside, &link).unwrap();
        let e = resolve(
            link.to_str().unwrap(),
            "image",
            spec,
            &allowed,
            crate::catalog::models(),
        )
        .unwrap_err();
        assert!(e.message.contains("outside the allowed"), "{}", e.message);

        let e = resolve(
            dir.path().to_str().unwrap(),
            "image",
            spec,
            &allowed,
            crate::catalog::models(),
        )
        .unwrap_err();
        assert!(e.message.contains("directory"), "{}", e.message);

        let fake = dir.path().join("fake.png");
        std::fs::write(&fake, b"not an image at all, just text").unwrap();
        let e = resolve(
            fake.to_str().unwrap(),
            "image",
            spec,
            &allowed,
            crate::catalog::models(),
        )
        .unwrap_err();
        assert!(e.message.contains("not a JPEG"), "{}", e.message);

        let big = dir.path().join("big.png");
        let mut bytes = png(8, 8, false);
        bytes.resize(11 * 1024 * 1024, 0);
        std::fs::write(&big, bytes).unwrap();
        let e = resolve(
            big.to_str().unwrap(),
            "image",
            spec,
            &allowed,
            crate::catalog::models(),
        )
        .unwrap_err();
        assert!(e.message.contains("at most 10 MB"), "{}", e.message);

        let e = resolve(
            "/no/such/file.png",
            "image",
            spec,
            &allowed,
            crate::catalog::models(),
        )
        .unwrap_err();
        assert_eq!(e.category, Category::InvalidInput);
    }

    #[test]
    fn data_uris_and_model_rules() {
        let spec26 = find_key("novita/wan2.6-i2v").unwrap();
        let uri = format!("data:image/png;base64,{}", B64.encode(png(400, 400, true)));
        let e = resolve(&uri, "image", spec26, &[], crate::catalog::models()).unwrap_err();
        assert!(e.message.contains("alpha"), "{}", e.message);
        let uri = format!("data:image/png;base64,{}", B64.encode(png(100, 400, false)));
        let e = resolve(&uri, "image", spec26, &[], crate::catalog::models()).unwrap_err();
        assert!(e.message.contains("between 360 and 2000"), "{}", e.message);
        let uri = format!("data:image/png;base64,{}", B64.encode(png(400, 400, false)));
        assert!(resolve(&uri, "image", spec26, &[], crate::catalog::models()).is_ok());

        // Over the size limit by its length alone: refused before decoding.
        let local = find_key("local/camera-preview").unwrap();
        let huge = format!("data:image/png;base64,{}", "A".repeat(72 << 20));
        let e = resolve(&huge, "image", local, &[], crate::catalog::models()).unwrap_err();
        assert!(e.message.contains("at most 50 MB"), "{}", e.message);
        let e = resolve(
            "data:image/png;base64,iVBORw0KGgo%%%",
            "image",
            local,
            &[],
            crate::catalog::models(),
        )
        .unwrap_err();
        assert!(e.message.contains("base64"), "{}", e.message);

        let spec21 = find_key("novita/wan2.1-i2v").unwrap();
        let e = resolve(&uri, "image", spec21, &[], crate::catalog::models()).unwrap_err();
        assert_eq!(e.category, Category::Unsupported);
        assert!(e.message.contains("novita/wan2.6-i2v"), "{}", e.message);
        assert!(matches!(
            resolve(
                "https://x.test/a.png",
                "image",
                spec21,
                &[],
                crate::catalog::models()
            )
            .unwrap(),
            ImageInput::Url(_)
        ));
    }
}

mod validate {
    use crate::model::CreateRequest;
    use crate::validate::*;

    use crate::catalog::find_key;
    use crate::error::Category;
    use crate::model::{CameraMotion, LoraRef, Resolution};

    fn req() -> CreateRequest {
        CreateRequest {
            image: Some("https://example.com/a.png".into()),
            prompt: "a cat turns its head".into(),
            ..CreateRequest::default()
        }
    }

    #[test]
    fn unsupported_parameters_name_who_supports_them() {
        let spec = find_key("novita/wan2.1-i2v").unwrap();
        let mut r = req();
        r.camera_motion = Some(CameraMotion {
            kind: "zoom_in".into(),
            speed: None,
        });
        let e = check(&r, spec).unwrap_err();
        assert_eq!(e.category, Category::Unsupported);
        assert!(e.message.contains("piapi/wan2.1-i2v-14b"), "{}", e.message);
        assert!(e.message.contains("local/camera-preview"), "{}", e.message);
    }

    #[test]
    fn limits_are_named() {
        let spec = find_key("novita/wan2.6-i2v").unwrap();
        let mut r = req();
        r.negative_prompt = Some("x".repeat(501));
        let e = check(&r, spec).unwrap_err();
        assert_eq!(e.category, Category::InvalidInput);
        assert!(e.message.contains("at most 500"), "{}", e.message);

        let mut r = req();
        r.resolution = Some(Resolution::P480);
        let e = check(&r, spec).unwrap_err();
        assert!(e.message.contains("720p, 1080p"), "{}", e.message);

        let spec21 = find_key("novita/wan2.1-i2v").unwrap();
        let mut r = req();
        r.seed = Some(9_999_999_999);
        assert!(
            check(&r, spec21).is_ok(),
            "seed beyond 32 bits is valid on wan2.1"
        );
        r.seed = Some(10_000_000_000);
        assert!(check(&r, spec21).is_err());
        r.seed = None;
        r.loras = (0..4)
            .map(|i| LoraRef {
                name: format!("l{i}"),
                strength: None,
            })
            .collect();
        assert!(check(&r, spec21).unwrap_err().message.contains("at most 3"));
    }

    #[test]
    fn wanx_variants_do_not_combine() {
        let spec = find_key("piapi/wan2.1-i2v-14b").unwrap();
        let mut r = req();
        r.end_image = Some("https://example.com/b.png".into());
        assert!(check(&r, spec).is_ok());
        r.loras = vec![LoraRef {
            name: "ghibli".into(),
            strength: None,
        }];
        let e = check(&r, spec).unwrap_err();
        assert_eq!(e.category, Category::Unsupported);
        assert!(e.message.contains("end_image and loras"), "{}", e.message);
    }

    #[test]
    fn bad_motion_and_speed() {
        let spec = find_key("local/camera-preview").unwrap();
        let mut r = req();
        r.camera_motion = Some(CameraMotion {
            kind: "spin".into(),
            speed: None,
        });
        assert_eq!(
            check(&r, spec).unwrap_err().category,
            Category::InvalidInput
        );
        r.camera_motion = Some(CameraMotion {
            kind: "zoom_in".into(),
            speed: Some(99.0),
        });
        assert!(
            check(&r, spec)
                .unwrap_err()
                .message
                .contains("out of range")
        );
    }
}

mod registry {
    use super::super::registry::*;
    use super::super::*;

    #[test]
    fn the_registry_follows_the_enum() {
        for &id in ProviderId::ALL {
            assert_eq!(id.decl().id, id);
            assert!(id.same_upstream().contains(&id), "{id}");
            assert_eq!(id.to_string(), id.as_str());
            assert_eq!(id.as_str().parse::<ProviderId>().unwrap(), id);
        }
        assert_eq!(
            "nope".parse::<ProviderId>().unwrap_err().message,
            "unknown provider 'nope': use one of piapi, qubico, novita, apikley, local, dashscope, fal, replicate"
        );
        assert_eq!(
            no_key_message(),
            "no provider has an API key: set PIAPI_API_KEY, QUBICO_API_KEY, NOVITA_API_KEY, APIKLEY_API_KEY, DASHSCOPE_API_KEY, FAL_KEY or REPLICATE_API_TOKEN, or pass provider \"local\" for a free offline camera-motion preview"
        );
        assert_eq!(
            lora_note(),
            "PiAPI/Qubico take other LoRA type names as given; Novita wan2.1-i2v takes a LoRA path as the name (up to 3)."
        );
    }
}

//! Rules over more than one setting: short forms expanded, settings that go together.

use std::collections::BTreeMap;

use herald_store::FilesUrl;

use super::{Config, Raw, SettingError, Source};

/// `files_dir` is the short form of `files_url=file://<dir>`: it becomes `files_url` (with its
/// source, so `herald config` says where the value came from). Setting both is an error.
pub(super) fn expand_short_forms(raw: &mut BTreeMap<&'static str, Raw>, errors: &mut Vec<SettingError>) {
    let dir = &raw["files_dir"];
    if dir.value.is_empty() {
        return;
    }
    let url = &raw["files_url"];
    if url.source != Source::Default {
        errors.push(SettingError {
            setting: "files_dir".to_owned(),
            message: format!(
                "cannot be set with files_url (from {} and {}): files_dir is the short form of files_url=file://<dir>, set one of them",
                dir.source, url.source
            ),
        });
        return;
    }
    let expanded = Raw { value: format!("file://{}", dir.value), source: dir.source };
    raw.insert("files_url", expanded);
}

/// Rules between settings, checked once every setting parsed.
pub(super) fn check_together(config: &Config, raw: &BTreeMap<&'static str, Raw>, errors: &mut Vec<SettingError>) {
    if let Err(err) = config.email() {
        errors.push(err);
    }
    if let Err(err) = config.egress() {
        errors.push(err);
    }
    if config.smtp_url.0.is_some() && config.email_from.0.is_none() {
        errors.push(SettingError {
            setting: "email_from".to_owned(),
            message: format!("must be set with smtp_url (from {}): every email needs a From", raw["smtp_url"].source),
        });
    }
    if config.oidc_issuer.0.is_some() {
        let missing = [
            ("oidc_client_id", config.oidc_client_id.0.is_none()),
            ("oidc_client_secret", config.oidc_client_secret.0.is_none()),
            ("oidc_redirect_url", config.oidc_redirect_url.0.is_none()),
        ];
        for (setting, absent) in missing {
            if absent {
                errors.push(SettingError {
                    setting: setting.to_owned(),
                    message: format!("must be set with oidc_issuer (from {})", raw["oidc_issuer"].source),
                });
            }
        }
    }
    if matches!(config.files_url, FilesUrl::S3(_)) {
        let options = config.s3_options();
        let checks =
            [("max_upload_size", options.check_max_upload_size()), ("s3_upload_memory", options.check_upload_memory())];
        for (setting, check) in checks {
            if let Err(message) = check {
                let message = format!("{message} (from {})", raw[setting].source);
                errors.push(SettingError { setting: setting.to_owned(), message });
            }
        }
    }
    if let Err(message) = config.check_body_timeout() {
        let message = format!("{message} (from {})", raw["http_body_timeout"].source);
        errors.push(SettingError { setting: "http_body_timeout".to_owned(), message });
    }
    // A sender keeps the longest channel call plus 5 s free at the end of each claim; a lease no
    // longer than that would have every delivery handed back, unsent, forever.
    let margin = config.longest_channel_call() + std::time::Duration::from_secs(5);
    if config.delivery_lease.0 <= margin {
        errors.push(SettingError {
            setting: "delivery_lease".to_owned(),
            message: format!(
                "must be longer than the longest channel timeout plus 5 s ({}), or no delivery is ever sent (from {})",
                humantime::format_duration(margin),
                raw["delivery_lease"].source
            ),
        });
    }
}

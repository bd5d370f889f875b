//! What the sync core needs to know ([`SyncSettings`]): the pairs, match key and templates, the certificate
//! settings, and how a run behaves (`TRANSITIVE_MEMBERSHIP`, `DRY_RUN`, `ALLOW_MASS_REMOVAL` and the removal
//! threshold, `REMOVAL_THRESHOLD_USERS` and `REMOVAL_THRESHOLD_PERCENT`).

use std::collections::BTreeSet;

use super::Reader;
use super::certificates::{self, CertificateSettings};
use super::names::*;
use super::pairs::{self, PairSettings};
use crate::domain::{CertificateSource, MatchKey, RemovalThreshold, Template};

/// What the sync core needs to know.
#[derive(Debug, Clone)]
pub struct SyncSettings {
    pub pairs: Vec<PairSettings>,
    pub match_key: MatchKey,
    pub templates: Vec<Template>,
    pub transitive_membership: bool,
    pub dry_run: bool,
    pub removal_threshold: RemovalThreshold,
    pub allow_mass_removal: bool,
    pub certificates: CertificateSettings,
    /// When a timer or continuation run stops starting writes and hands the rest to a continuation
    /// (`SYNC_SOFT_DEADLINE_MINUTES`, 25: five minutes below host.json's `functionTimeout` of 30).
    pub soft_deadline: std::time::Duration,
}

impl SyncSettings {
    /// The certificate sources some pair reads, each once.
    pub fn certificate_sources(&self) -> BTreeSet<CertificateSource> {
        self.pairs.iter().filter_map(|p| p.certificate_source).collect()
    }
}

/// Reads the sync settings, in the order their problems are reported; `None` when one of them has a problem.
pub(super) fn read(r: &mut Reader<'_>) -> Option<SyncSettings> {
    let mut pairs = pairs::read_pairs(r);
    let match_key = pairs::read_match_key(r);
    let templates = pairs::read_templates(r);
    let certificates = certificates::read(r, pairs.as_deref_mut(), templates.as_deref());
    let transitive_membership = r.bool(TRANSITIVE_MEMBERSHIP, false);
    let dry_run = r.bool(DRY_RUN, false);
    let allow_mass_removal = r.bool(ALLOW_MASS_REMOVAL, false);
    let deadline_value = r.optional(SYNC_SOFT_DEADLINE_MINUTES);
    let soft_deadline = r
        .parsed(SYNC_SOFT_DEADLINE_MINUTES, deadline_value, |v| match v.trim().parse::<f64>() {
            // host.json's functionTimeout is 30 min; the run needs time after the deadline to settle and report.
            Ok(minutes) if minutes > 0.0 && minutes <= 25.0 => Ok(std::time::Duration::from_secs_f64(minutes * 60.0)),
            _ => Err(format!(
                "must be minutes above 0 and at most 25 (5 below host.json's functionTimeout of 30), not {v:?}"
            )),
        })
        .unwrap_or(std::time::Duration::from_secs(25 * 60));
    let users_value = r.optional(REMOVAL_THRESHOLD_USERS);
    let max_users = r
        .parsed(REMOVAL_THRESHOLD_USERS, users_value, |v| {
            v.parse::<usize>().map_err(|_| format!("must be a whole number, not {v:?}"))
        })
        .unwrap_or(500);
    let percent_value = r.optional(REMOVAL_THRESHOLD_PERCENT);
    let max_percent = r
        .parsed(REMOVAL_THRESHOLD_PERCENT, percent_value, |v| match v.parse::<f64>() {
            Ok(p) if (0.0..=100.0).contains(&p) => Ok(p),
            _ => Err(format!("must be a percentage between 0 and 100, not {v:?}")),
        })
        .unwrap_or(20.0);
    Some(SyncSettings {
        pairs: pairs?,
        match_key: match_key?,
        templates: templates?,
        transitive_membership,
        dry_run,
        removal_threshold: RemovalThreshold { max_users, max_percent },
        allow_mass_removal,
        certificates: certificates?,
        soft_deadline,
    })
}

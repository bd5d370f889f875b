//! The pairs and how their users are matched and written: `SYNC_PAIRS`, `MATCH_ON` and
//! `CERTIFICATE_USER_ID_TEMPLATES`.

use super::Reader;
use super::names::*;
use crate::domain::{CertificateSource, GroupId, MAX_VALUES_PER_USER, MatchKey, Side, Template};

/// One pair: the users of these Tenant A groups are matched to the users of these Tenant B groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairSettings {
    /// A short name for logs and reports (`pair-1`, … in the order given).
    pub name: String,
    pub source_groups: Vec<GroupId>,
    pub target_groups: Vec<GroupId>,
    /// Where the certificates Intune issued to this pair's Tenant A users are read (`CERTIFICATE_SOURCE`), if any.
    pub certificate_source: Option<CertificateSource>,
}

impl PairSettings {
    /// The pair's groups in one tenant: its Tenant A (source) or its Tenant B (target) groups.
    pub fn groups(&self, side: Side) -> &[GroupId] {
        match side {
            Side::TenantA => &self.source_groups,
            Side::TenantB => &self.target_groups,
        }
    }
}

/// Parses `SYNC_PAIRS`: `<A group>[,<A group>…]-><B group>[,<B group>…]`, pairs separated by `;`.
pub fn parse_pairs(value: &str) -> Result<Vec<PairSettings>, String> {
    let mut pairs = Vec::new();
    for (index, text) in value.split(';').map(str::trim).filter(|p| !p.is_empty()).enumerate() {
        let name = format!("pair-{}", index + 1);
        let (sources, targets) = text
            .split_once("->")
            .ok_or_else(|| format!("{name} {text:?} must look like <Tenant A group id>-><Tenant B group id>"))?;
        let groups = |list: &str, side: Side| -> Result<Vec<GroupId>, String> {
            let groups = list
                .split(',')
                .map(str::trim)
                .filter(|g| !g.is_empty())
                .map(|g| GroupId::parse(g).map_err(|e| format!("{name}, {side}: {e}")))
                .collect::<Result<Vec<_>, _>>()?;
            if groups.is_empty() {
                return Err(format!("{name} {text:?} names no {side} group"));
            }
            Ok(groups)
        };
        let (source_groups, target_groups) = (groups(sources, Side::TenantA)?, groups(targets, Side::TenantB)?);
        pairs.push(PairSettings { name, source_groups, target_groups, certificate_source: None });
    }
    if pairs.is_empty() {
        return Err("names no pair; expected <Tenant A group id>-><Tenant B group id>[;…]".to_owned());
    }
    Ok(pairs)
}

/// `SYNC_PAIRS`, required.
pub(super) fn read_pairs(r: &mut Reader<'_>) -> Option<Vec<PairSettings>> {
    let pairs_value = r.required(SYNC_PAIRS, "<Tenant A group id>-><Tenant B group id>, several separated by ';'");
    r.parsed(SYNC_PAIRS, pairs_value, parse_pairs)
}

/// `MATCH_ON`, `upn-local-part` unless set.
pub(super) fn read_match_key(r: &mut Reader<'_>) -> Option<MatchKey> {
    let match_value = r.optional(MATCH_ON).unwrap_or_else(|| "upn-local-part".to_owned());
    r.parsed(MATCH_ON, Some(match_value), |v| {
        MatchKey::parse(v).ok_or_else(|| format!("must be one of {}, not {v:?}", MatchKey::CHOICES))
    })
}

/// `CERTIFICATE_USER_ID_TEMPLATES`, required: presets or templates, at most as many as a user holds values.
pub(super) fn read_templates(r: &mut Reader<'_>) -> Option<Vec<Template>> {
    let templates_value = r.required(
        CERTIFICATE_USER_ID_TEMPLATES,
        "the certificateUserIds values to write, as presets (runbook, principal-name, subject-cn, rfc822) or templates such as X509:<PN>{upn}, separated by ';' — see README \"Choosing the mapping\"",
    );
    r.parsed(CERTIFICATE_USER_ID_TEMPLATES, templates_value, |v| {
        let templates = v
            .split(';')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(|t| Template::parse(t).map_err(|e| e.to_string()))
            .collect::<Result<Vec<_>, _>>()?;
        if templates.is_empty() {
            return Err("names no template".to_owned());
        }
        if templates.len() > MAX_VALUES_PER_USER {
            return Err(format!(
                "names {} templates; a user holds at most {} values",
                templates.len(),
                MAX_VALUES_PER_USER
            ));
        }
        Ok(templates)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_parse_several_groups_per_side() {
        let pairs = parse_pairs(
            "aaaaaaaa-0000-0000-0000-000000000001, aaaaaaaa-0000-0000-0000-000000000002 -> bbbbbbbb-0000-0000-0000-000000000001; \
             aaaaaaaa-0000-0000-0000-000000000003->bbbbbbbb-0000-0000-0000-000000000002",
        )
        .unwrap();
        assert_eq!(pairs.len(), 2);
        assert_eq!(pairs[0].source_groups.len(), 2);
        assert_eq!(pairs[1].name, "pair-2");
        for bad in ["", "aaaaaaaa-0000-0000-0000-000000000001", "x->y", "->bbbbbbbb-0000-0000-0000-000000000001"] {
            assert!(parse_pairs(bad).is_err(), "{bad:?}");
        }
    }
}

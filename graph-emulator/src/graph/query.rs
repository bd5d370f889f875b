//! OData query options: `$select`, `$top`, `$count`, `$filter`, `$skiptoken`, `$deltatoken`. [query-parameters]

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::error::GraphError;

/// Default and maximum page sizes of directory collections. [group-list-members]
pub(crate) const DEFAULT_PAGE_SIZE: usize = 100;
pub(crate) const MAX_PAGE_SIZE: usize = 999;

/// The query options of one request, parsed.
#[derive(Debug, Clone, Default)]
pub(crate) struct Query {
    /// Every pair, decoded, in order.
    pub pairs: Vec<(String, String)>,
    pub select: Option<Vec<String>>,
    pub top: Option<usize>,
    pub count: bool,
    pub filter: Option<String>,
    pub skiptoken: Option<String>,
    pub deltatoken: Option<String>,
    pub expand: Option<String>,
}

impl Query {
    pub(crate) fn parse(raw: &str) -> Result<Self, GraphError> {
        let pairs: Vec<(String, String)> =
            url::form_urlencoded::parse(raw.as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
        let mut query = Query { pairs: pairs.clone(), ..Query::default() };
        let mut seen: Vec<String> = Vec::new();
        for (key, value) in pairs {
            let lower = key.to_ascii_lowercase();
            if lower.starts_with('$') {
                if seen.contains(&lower) {
                    return Err(GraphError::bad_request(
                        "BadRequest",
                        format!(
                            "Query option '{key}' was specified more than once, but it must be specified at most once."
                        ),
                    ));
                }
                seen.push(lower.clone());
            }
            match lower.as_str() {
                "$select" => {
                    let props: Vec<String> =
                        value.split(',').map(|p| p.trim().to_owned()).filter(|p| !p.is_empty()).collect();
                    query.select = Some(props);
                }
                "$top" => {
                    let top: i64 = value.trim().parse().map_err(|_| {
                        GraphError::bad_request(
                            "BadRequest",
                            format!("Invalid value '{value}' for $top query option found."),
                        )
                    })?;
                    query.top = Some(usize::try_from(top).map_err(|_| invalid_page_size(&value))?);
                }
                "$count" => match value.trim() {
                    "true" => query.count = true,
                    "false" => query.count = false,
                    _ => {
                        return Err(GraphError::bad_request(
                            "BadRequest",
                            format!(
                                "Invalid value '{value}' for $count query option found. Valid values are 'true', 'false'."
                            ),
                        ));
                    }
                },
                "$filter" => query.filter = Some(value),
                "$skiptoken" => query.skiptoken = Some(value),
                "$deltatoken" => query.deltatoken = Some(value),
                "$expand" => query.expand = Some(value),
                _ => {}
            }
        }
        Ok(query)
    }

    /// The page size: `$top` (1..=999) or 100. [group-list-members]
    pub(crate) fn page_size(&self) -> Result<usize, GraphError> {
        match self.top {
            None => Ok(DEFAULT_PAGE_SIZE),
            Some(top) if (1..=MAX_PAGE_SIZE).contains(&top) => Ok(top),
            Some(top) => Err(invalid_page_size(&top.to_string())),
        }
    }

    /// The query again, minus `$skiptoken`, plus a new one: the query part of an `@odata.nextLink`.
    pub(crate) fn with_skiptoken(&self, token: &str) -> String {
        let mut out = String::new();
        for (key, value) in &self.pairs {
            if key.eq_ignore_ascii_case("$skiptoken") {
                continue;
            }
            push_pair(&mut out, key, value);
        }
        push_pair(&mut out, "$skiptoken", token);
        out
    }
}

fn invalid_page_size(value: &str) -> GraphError {
    GraphError::bad_request(
        "Request_BadRequest",
        format!("Invalid page size specified: '{value}'. Must be between 1 and {MAX_PAGE_SIZE} inclusive."),
    )
}

fn push_pair(out: &mut String, key: &str, value: &str) {
    if !out.is_empty() {
        out.push('&');
    }
    out.extend(url::form_urlencoded::byte_serialize(key.as_bytes()).map(|s| s.replace("%24", "$")));
    out.push('=');
    out.extend(url::form_urlencoded::byte_serialize(value.as_bytes()));
}

/// Whether the request carries `ConsistencyLevel: eventual`. [aad-advanced-queries]
pub(crate) fn is_eventual(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get("consistencylevel")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("eventual"))
}

/// An opaque `$skiptoken`: a position in a listing, bound to the listing it came from.
pub(crate) fn encode_skiptoken(scope: &str, position: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("emu1\u{1f}{}\u{1f}{position}", scope_hash(scope)))
}

pub(crate) fn decode_skiptoken(scope: &str, token: &str) -> Result<String, GraphError> {
    let invalid =
        || GraphError::bad_request("Request_BadRequest", "The specified page token value has expired or is invalid.");
    let bytes = URL_SAFE_NO_PAD.decode(token.trim()).map_err(|_| invalid())?;
    let text = String::from_utf8(bytes).map_err(|_| invalid())?;
    let mut parts = text.splitn(3, '\u{1f}');
    match (parts.next(), parts.next(), parts.next()) {
        (Some("emu1"), Some(hash), Some(position)) if hash == scope_hash(scope) => Ok(position.to_owned()),
        _ => Err(invalid()),
    }
}

/// Where a paged listing resumes: the index in the `$skiptoken` (bound to `scope`), or 0 without one.
pub(crate) fn skiptoken_position(query: &Query, scope: &str) -> Result<usize, GraphError> {
    match &query.skiptoken {
        Some(token) => decode_skiptoken(scope, token)?.parse().map_err(|_| {
            GraphError::bad_request("Request_BadRequest", "The specified page token value has expired or is invalid.")
        }),
        None => Ok(0),
    }
}

fn scope_hash(scope: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(scope.as_bytes());
    digest.iter().take(6).map(|b| format!("{b:02x}")).collect()
}

/// A `$filter` on users the emulator understands. [user-list], [concept-certificate-based-authentication-certificateuserids]
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum UserFilter {
    /// `authorizationInfo/certificateUserIds/any(x:x eq 'value')`: an advanced query.
    CertificateUserId(String),
    /// `{property} eq 'value'` on id, userPrincipalName, mail, employeeId, onPremisesSamAccountName.
    Eq(UserProperty, String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UserProperty {
    Id,
    UserPrincipalName,
    Mail,
    EmployeeId,
    OnPremisesSamAccountName,
}

/// Parses an OData string literal at the start of `s`: `'...'` with `''` for a quote. Returns it and the rest.
fn string_literal(s: &str) -> Option<(String, &str)> {
    let s = s.strip_prefix('\'')?;
    let mut out = String::new();
    let mut chars = s.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c == '\'' {
            if chars.peek().is_some_and(|&(_, n)| n == '\'') {
                out.push('\'');
                chars.next();
            } else {
                return Some((out, &s[i + 1..]));
            }
        } else {
            out.push(c);
        }
    }
    None
}

fn unsupported_filter() -> GraphError {
    GraphError::bad_request("Request_UnsupportedQuery", "Unsupported or invalid query filter clause specified.")
}

pub(crate) fn parse_user_filter(filter: &str) -> Result<UserFilter, GraphError> {
    let f = filter.trim();
    let lower = f.to_ascii_lowercase();
    if let Some(rest) = lower.strip_prefix("authorizationinfo/certificateuserids/any(") {
        // any(x:x eq 'value'), any variable name, spaces tolerated.
        let rest_orig = &f[f.len() - rest.len()..];
        let (var, body) = rest_orig.split_once(':').ok_or_else(unsupported_filter)?;
        let var = var.trim();
        let body = body.trim_start();
        let body = body.strip_prefix(var).ok_or_else(unsupported_filter)?.trim_start();
        let body =
            body.strip_prefix("eq").or_else(|| body.strip_prefix("EQ")).ok_or_else(unsupported_filter)?.trim_start();
        let (value, rest) = string_literal(body).ok_or_else(unsupported_filter)?;
        if rest.trim() != ")" {
            return Err(unsupported_filter());
        }
        return Ok(UserFilter::CertificateUserId(value));
    }
    let (property, rest) = f.split_once(char::is_whitespace).ok_or_else(unsupported_filter)?;
    let rest = rest.trim_start();
    if !rest.to_ascii_lowercase().starts_with("eq ") {
        return Err(unsupported_filter());
    }
    let (value, rest) = string_literal(rest[3..].trim_start()).ok_or_else(unsupported_filter)?;
    if !rest.trim().is_empty() {
        return Err(unsupported_filter());
    }
    let property = match property.to_ascii_lowercase().as_str() {
        "id" => UserProperty::Id,
        "userprincipalname" => UserProperty::UserPrincipalName,
        "mail" => UserProperty::Mail,
        "employeeid" => UserProperty::EmployeeId,
        "onpremisessamaccountname" => UserProperty::OnPremisesSamAccountName,
        _ => return Err(unsupported_filter()),
    };
    Ok(UserFilter::Eq(property, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    // [concept-certificate-based-authentication-certificateuserids] the documented lookup, quotes doubled.
    #[test]
    fn certificate_user_id_filter_unescapes_doubled_quotes() {
        let f = parse_user_filter("authorizationInfo/certificateUserIds/any(x:x eq 'X509:<PN>o''brien@x')").unwrap();
        assert_eq!(f, UserFilter::CertificateUserId("X509:<PN>o'brien@x".into()));
        let f = parse_user_filter("authorizationInfo/certificateUserIds/any(c: c eq 'v')").unwrap();
        assert_eq!(f, UserFilter::CertificateUserId("v".into()));
    }

    #[test]
    fn property_equality_filters_parse_and_others_are_refused() {
        assert_eq!(
            parse_user_filter("employeeId eq '42'").unwrap(),
            UserFilter::Eq(UserProperty::EmployeeId, "42".into())
        );
        assert!(parse_user_filter("startswith(displayName,'a')").is_err());
        assert!(parse_user_filter("mail eq 'a' or mail eq 'b'").is_err());
    }

    // [group-list-members] $top is 1..=999, default 100.
    #[test]
    fn page_size_bounds() {
        assert_eq!(Query::parse("").unwrap().page_size().unwrap(), 100);
        assert_eq!(Query::parse("$top=999").unwrap().page_size().unwrap(), 999);
        assert!(Query::parse("$top=1000").unwrap().page_size().is_err());
        assert!(Query::parse("$top=0").unwrap().page_size().is_err());
        assert!(Query::parse("%24top=abc").is_err());
    }

    #[test]
    fn skiptokens_are_bound_to_their_listing() {
        let token = encode_skiptoken("groups/a/members", "250");
        assert_eq!(decode_skiptoken("groups/a/members", &token).unwrap(), "250");
        assert!(decode_skiptoken("groups/b/members", &token).is_err());
        assert!(decode_skiptoken("groups/a/members", "garbage").is_err());
    }

    #[test]
    fn next_link_query_keeps_options_and_replaces_the_skiptoken() {
        let q = Query::parse("$top=999&$select=id,mail&$skiptoken=old").unwrap();
        assert_eq!(q.with_skiptoken("new"), "$top=999&$select=id%2Cmail&$skiptoken=new");
    }
}

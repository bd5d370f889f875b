//! The human rendering of [`CertificateIds`]: one table row per reading, `*` on the readings certsync writes by default,
//! notes as numbered footnotes, then the notes about the input and the DN conventions.

use std::fmt::Write as _;

use super::CertificateIds;
use crate::domain::Binding;

/// The binding names of Entra's username-binding policy.
fn binding_name(binding: Binding) -> &'static str {
    match binding {
        Binding::PrincipalName => "PrincipalName",
        Binding::Rfc822Name => "RFC822Name",
        Binding::Subject => "Subject",
        Binding::IssuerAndSubject => "IssuerAndSubject",
        Binding::SubjectKeyIdentifier => "SKI",
        Binding::Sha1PublicKey => "SHA1PublicKey",
        Binding::IssuerAndSerialNumber => "IssuerAndSerialNumber",
    }
}

pub(super) fn text(ids: &CertificateIds) -> String {
    let mut footnotes: Vec<&str> = Vec::new();
    let mut rows: Vec<[String; 5]> =
        vec![[String::new(), "BINDING".to_owned(), "AFFINITY".to_owned(), "READING".to_owned(), "VALUE".to_owned()]];
    for value in &ids.values {
        let mut shown = match &value.value {
            Some(id) => id.to_string(),
            None => "(not applicable)".to_owned(),
        };
        if let Some(note) = &value.note {
            // The same note on several rows gets one number.
            let number = match footnotes.iter().position(|known| *known == note.as_str()) {
                Some(index) => index + 1,
                None => {
                    footnotes.push(note);
                    footnotes.len()
                }
            };
            let _ = write!(shown, " [{number}]");
        }
        rows.push([
            if value.default && value.value.is_some() { "*" } else { "" }.to_owned(),
            binding_name(value.binding).to_owned(),
            if value.binding.is_high_affinity() { "high" } else { "low" }.to_owned(),
            value.label.clone(),
            shown,
        ]);
    }
    let widths: Vec<usize> =
        (0..4).map(|column| rows.iter().map(|row| row[column].chars().count()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for row in &rows {
        let mut line = String::new();
        for (column, width) in widths.iter().enumerate() {
            let _ = write!(line, "{:<width$}  ", row[column], width = *width);
        }
        line.push_str(&row[4]);
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out.push_str("\n* = the reading certsync writes by default.\n");
    if !footnotes.is_empty() {
        out.push('\n');
        for (index, note) in footnotes.iter().enumerate() {
            let _ = writeln!(out, "[{}] {note}", index + 1);
        }
    }
    if !ids.notes.is_empty() {
        out.push_str("\nNotes:\n");
        for note in &ids.notes {
            let _ = writeln!(out, "- {note}");
        }
    }
    out
}

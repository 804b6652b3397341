//! 5.2 search on MySQL and MariaDB: `search_docs.terms` holds the encoded
//! terms under an InnoDB FULLTEXT index, queried in boolean mode. The
//! encoding keeps every term at least three characters long and off the
//! stop word list, so `innodb_ft_min_token_size` and the stop words
//! leave short words ("go") and two-character CJK pairs searchable.

use async_trait::async_trait;
use sqlx::{MySql, MySqlConnection, QueryBuilder};
use tern_core::search::{index_message, Part, Terms};
use tern_core::store::StoreResult;

use super::MySqlDialect;
use crate::common::be;
use crate::search::SearchIndex;

/// Boolean-mode text of `t`: every part required (`+`), a prefix as
/// `term*`, a phrase quoted. Encoded terms are plain ASCII words.
fn boolean_query(t: &Terms) -> String {
    t.parts
        .iter()
        .map(|p| match p {
            Part::Term(w) => format!("+{w}"),
            Part::Prefix(w) => format!("+{w}*"),
            Part::Phrase(ws) => format!("+\"{}\"", ws.join(" ")),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Writes (or replaces) the terms of these messages and marks them.
async fn write_docs(
    c: &mut MySqlConnection,
    rows: &[(String, i64, String, Option<String>)],
) -> StoreResult<()> {
    let docs: Vec<(&str, i64, String)> = rows
        .iter()
        .filter_map(|(conv, seq, kind, content)| {
            let t = index_message(kind, content.as_deref());
            (!t.is_empty()).then_some((conv.as_str(), *seq, t))
        })
        .collect();
    if !docs.is_empty() {
        let mut qb: QueryBuilder<MySql> =
            QueryBuilder::new("INSERT INTO search_docs (conv, seq, terms) ");
        qb.push_values(&docs, |mut b, (conv, seq, terms)| {
            b.push_bind(*conv).push_bind(*seq).push_bind(terms.as_str());
        });
        qb.push(" ON DUPLICATE KEY UPDATE terms = VALUES(terms)");
        qb.build().execute(&mut *c).await.map_err(be)?;
    }
    if !rows.is_empty() {
        let mut qb: QueryBuilder<MySql> =
            QueryBuilder::new("UPDATE messages SET indexed = TRUE WHERE (conv, seq) IN (");
        let mut sep = qb.separated(", ");
        for (conv, seq, _, _) in rows {
            sep.push("(")
                .push_bind_unseparated(conv.as_str())
                .push_unseparated(", ")
                .push_bind_unseparated(*seq)
                .push_unseparated(")");
        }
        qb.push(")");
        qb.build().execute(&mut *c).await.map_err(be)?;
    }
    Ok(())
}

#[async_trait]
impl SearchIndex for MySqlDialect {
    async fn write_docs(
        c: &mut MySqlConnection,
        rows: &[(String, i64, String, Option<String>)],
    ) -> StoreResult<()> {
        write_docs(c, rows).await
    }

    fn matching(t: &Terms) -> String {
        boolean_query(t)
    }
}

//! 5.2 search on PostgreSQL: `search_docs.terms` is the `tsvector` of the
//! encoded terms (`simple` configuration: every term kept as written,
//! with its position for phrases); queries are `tsquery` text.

use async_trait::async_trait;
use sqlx::PgConnection;
use tern_core::search::{index_message, Part, Terms};
use tern_core::store::StoreResult;

use super::Pg;
use crate::common::be;
use crate::search::SearchIndex;

/// `tsquery` text of `t`: every part (`&`), a prefix as `term:*`, a phrase
/// with `<->`. Encoded terms are plain ASCII words: nothing to quote.
fn tsquery(t: &Terms) -> String {
    t.parts
        .iter()
        .map(|p| match p {
            Part::Term(w) => w.clone(),
            Part::Prefix(w) => format!("{w}:*"),
            Part::Phrase(ws) => format!("({})", ws.join(" <-> ")),
        })
        .collect::<Vec<_>>()
        .join(" & ")
}

/// Writes (or replaces) the terms of these messages and marks them.
async fn write_docs(
    c: &mut PgConnection,
    rows: &[(String, i64, String, Option<String>)],
) -> StoreResult<()> {
    let (mut convs, mut seqs, mut terms) = (Vec::new(), Vec::new(), Vec::new());
    for (conv, seq, kind, content) in rows {
        let t = index_message(kind, content.as_deref());
        if !t.is_empty() {
            convs.push(conv.as_str());
            seqs.push(*seq);
            terms.push(t);
        }
    }
    if !convs.is_empty() {
        sqlx::query(
            "INSERT INTO search_docs (conv, seq, terms) \
             SELECT u.c, u.s, to_tsvector('simple', u.t) \
             FROM UNNEST($1::text[], $2::bigint[], $3::text[]) AS u(c, s, t) \
             ON CONFLICT (conv, seq) DO UPDATE SET terms = EXCLUDED.terms",
        )
        .bind(&convs)
        .bind(&seqs)
        .bind(&terms)
        .execute(&mut *c)
        .await
        .map_err(be)?;
    }
    let convs: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
    let seqs: Vec<i64> = rows.iter().map(|r| r.1).collect();
    sqlx::query(
        "UPDATE messages m SET indexed = true \
         FROM UNNEST($1::text[], $2::bigint[]) AS u(c, s) \
         WHERE m.conv = u.c AND m.seq = u.s AND NOT m.indexed",
    )
    .bind(&convs)
    .bind(&seqs)
    .execute(&mut *c)
    .await
    .map_err(be)?;
    Ok(())
}

#[async_trait]
impl SearchIndex for Pg {
    async fn write_docs(
        c: &mut PgConnection,
        rows: &[(String, i64, String, Option<String>)],
    ) -> StoreResult<()> {
        write_docs(c, rows).await
    }

    fn matching(t: &Terms) -> String {
        tsquery(t)
    }
}

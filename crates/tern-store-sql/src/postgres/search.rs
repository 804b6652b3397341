//! 5.2 search on PostgreSQL: `search_docs.terms` is the `tsvector` of the
//! encoded terms (`simple` configuration: every term kept as written,
//! with its position for phrases); queries are `tsquery` text.

use async_trait::async_trait;
use sqlx::PgConnection;
use tern_core::search::{index_message, Part, SearchQuery, Terms};
use tern_core::store::{StoreResult, StoredMessage};

use super::Pg;
use crate::common::{be, msg_cols};
use crate::search::SearchIndex;
use crate::shared::Shared;

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
    async fn index_pending(c: &mut PgConnection, max: u32) -> StoreResult<u32> {
        let rows: Vec<(String, i64, String, Option<String>)> = sqlx::query_as(
            "SELECT conv, seq, kind, content FROM messages WHERE NOT indexed \
             ORDER BY msg_id LIMIT $1 FOR UPDATE SKIP LOCKED",
        )
        .bind(i64::from(max))
        .fetch_all(&mut *c)
        .await
        .map_err(be)?;
        write_docs(c, &rows).await?;
        Ok(rows.len() as u32)
    }

    async fn write_docs(
        c: &mut PgConnection,
        rows: &[(String, i64, String, Option<String>)],
    ) -> StoreResult<()> {
        write_docs(c, rows).await
    }

    async fn search(
        c: &mut PgConnection,
        user: &str,
        q: &SearchQuery,
    ) -> StoreResult<Vec<StoredMessage>> {
        let sql = concat!(
            "SELECT ",
            msg_cols!(),
            " FROM search_docs d \
             JOIN messages m ON m.conv = d.conv AND m.seq = d.seq \
             JOIN user_convs uc ON uc.user_id = $1 AND uc.conv = d.conv \
             WHERE d.terms @@ $2::tsquery AND NOT m.recalled \
               AND (uc.until_seq IS NULL OR m.seq <= uc.until_seq) \
               AND ($3::text IS NULL OR d.conv = $3) AND ($4::bigint IS NULL OR m.ts < $4) \
               AND NOT EXISTS (SELECT 1 FROM hidden h \
                   WHERE h.user_id = $1 AND h.conv = m.conv AND h.seq = m.seq) \
             ORDER BY m.ts DESC, m.msg_id DESC LIMIT $5"
        );
        let rows = sqlx::query(sql)
            .bind(user)
            .bind(tsquery(&q.terms))
            .bind(q.conv.as_deref())
            .bind(q.before_ts)
            .bind(i64::from(q.limit))
            .fetch_all(&mut *c)
            .await
            .map_err(be)?;
        Pg::messages_at(&rows, 0)
    }
}

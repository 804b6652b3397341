//! 5.2 search on MySQL and MariaDB: `search_docs.terms` holds the encoded
//! terms under an InnoDB FULLTEXT index, queried in boolean mode. The
//! encoding keeps every term at least three characters long and off the
//! stop word list, so `innodb_ft_min_token_size` and the stop words
//! leave short words ("go") and two-character CJK pairs searchable.

use async_trait::async_trait;
use sqlx::{MySql, MySqlConnection, QueryBuilder};
use tern_core::search::{index_message, Part, SearchQuery, Terms};
use tern_core::store::{StoreResult, StoredMessage};

use super::MySqlDialect;
use crate::common::{be, msg_cols};
use crate::search::SearchIndex;
use crate::shared::Shared;

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
    async fn index_pending(c: &mut MySqlConnection, max: u32) -> StoreResult<u32> {
        let rows: Vec<(String, i64, String, Option<String>)> = sqlx::query_as(
            "SELECT conv, seq, kind, content FROM messages WHERE indexed = FALSE \
             ORDER BY msg_id LIMIT ? FOR UPDATE SKIP LOCKED",
        )
        .bind(i64::from(max))
        .fetch_all(&mut *c)
        .await
        .map_err(be)?;
        write_docs(c, &rows).await?;
        Ok(rows.len() as u32)
    }

    async fn write_docs(
        c: &mut MySqlConnection,
        rows: &[(String, i64, String, Option<String>)],
    ) -> StoreResult<()> {
        write_docs(c, rows).await
    }

    async fn search(
        c: &mut MySqlConnection,
        user: &str,
        q: &SearchQuery,
    ) -> StoreResult<Vec<StoredMessage>> {
        let sql = concat!(
            "SELECT ",
            msg_cols!(),
            " FROM search_docs d \
             JOIN messages m ON m.conv = d.conv AND m.seq = d.seq \
             JOIN user_convs uc ON uc.user_id = ? AND uc.conv = d.conv \
             WHERE MATCH (d.terms) AGAINST (? IN BOOLEAN MODE) AND NOT m.recalled \
               AND (uc.until_seq IS NULL OR m.seq <= uc.until_seq) \
               AND (? IS NULL OR d.conv = ?) AND (? IS NULL OR m.ts < ?) \
               AND NOT EXISTS (SELECT 1 FROM hidden h \
                   WHERE h.user_id = ? AND h.conv = m.conv AND h.seq = m.seq) \
             ORDER BY m.ts DESC, m.msg_id DESC LIMIT ?"
        );
        let rows = sqlx::query(sql)
            .bind(user)
            .bind(boolean_query(&q.terms))
            .bind(q.conv.as_deref())
            .bind(q.conv.as_deref())
            .bind(q.before_ts)
            .bind(q.before_ts)
            .bind(user)
            .bind(i64::from(q.limit))
            .fetch_all(&mut *c)
            .await
            .map_err(be)?;
        MySqlDialect::messages_at(&rows, 0)
    }
}

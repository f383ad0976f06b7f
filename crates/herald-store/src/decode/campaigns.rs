//! Rows of the campaign tables: clients and mailings (a mailing's filter and send window checked
//! on the way out).

use herald_core::{
    campaign::{Client, ClientId, Mailing, MailingFilter, MailingId, MessageText, OperatorCode, Phone, Tag},
    delivery::{DailyWindow, LocalTime},
    store::StoreError,
};
use sqlx::FromRow;
use uuid::Uuid;

use crate::{
    columns::{Stamp, Texts},
    error::corrupt,
};

super::readers! {
    client(ClientCols) -> Client = client_of, "client row";
    mailing(MailingCols) -> Mailing = mailing_of, "mailing row";
}

#[derive(FromRow)]
pub(crate) struct ClientCols {
    id: Uuid,
    phone: String,
    operator_code: String,
    tag: String,
    timezone: String,
    created_at: Stamp,
    updated_at: Stamp,
}

fn client_of(c: ClientCols) -> Result<Client, StoreError> {
    Ok(Client {
        id: ClientId(c.id),
        phone: Phone::parse(&c.phone).map_err(|e| corrupt("client phone", e))?,
        operator_code: OperatorCode::parse(&c.operator_code).map_err(|e| corrupt("client operator code", e))?,
        tag: Tag::parse(&c.tag).map_err(|e| corrupt("client tag", e))?,
        timezone: c.timezone.parse().map_err(|e| corrupt("client timezone", e))?,
        created_at: c.created_at.0,
        updated_at: c.updated_at.0,
    })
}

/// A mailing row's columns; filter parts as lists of texts, the window as `HH:MM` texts.
#[derive(FromRow)]
pub(crate) struct MailingCols {
    id: Uuid,
    start_at: Stamp,
    end_at: Stamp,
    text: String,
    operator_codes: Option<Texts>,
    tags: Option<Texts>,
    window_from: Option<String>,
    window_to: Option<String>,
    status: String,
    created_at: Stamp,
    updated_at: Stamp,
}

fn mailing_of(c: MailingCols) -> Result<Mailing, StoreError> {
    let window = match (c.window_from, c.window_to) {
        (Some(from), Some(to)) => {
            let time = |t: &str| t.parse::<LocalTime>().map_err(|e| corrupt("mailing window", e));
            Some(DailyWindow::new(time(&from)?, time(&to)?).map_err(|e| corrupt("mailing window", e))?)
        }
        (None, None) => None,
        _ => return Err(corrupt("mailing window", "one end of the window is missing")),
    };
    Ok(Mailing {
        id: MailingId(c.id),
        start_at: c.start_at.0,
        end_at: c.end_at.0,
        text: MessageText::parse(&c.text).map_err(|e| corrupt("mailing text", e))?,
        filter: MailingFilter {
            operator_codes: filter_part(c.operator_codes, OperatorCode::parse)?,
            tags: filter_part(c.tags, Tag::parse)?,
        },
        window,
        status: c.status.parse().map_err(|e| corrupt("mailing status", e))?,
        created_at: c.created_at.0,
        updated_at: c.updated_at.0,
    })
}

/// One part of a mailing's filter (operator codes or tags), each text checked by `parse`.
fn filter_part<T>(
    texts: Option<Texts>,
    parse: fn(&str) -> Result<T, &'static str>,
) -> Result<Option<Vec<T>>, StoreError> {
    texts
        .map(|Texts(texts)| texts.iter().map(|t| parse(t).map_err(|e| corrupt("mailing filter", e))).collect())
        .transpose()
}

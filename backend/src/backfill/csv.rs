//! Hotmart's CSV sales export, "Modelo Detalhado de Vendas", read into
//! [`SaleRecord`]s: the operator's offline backfill.
//!
//! The format, as six independent parsers of it agree: `;`-separated (`,` and tab also seen,
//! so the header line decides), UTF-8 with or without a BOM (latin-1 when the bytes are not
//! UTF-8: a file re-saved by a spreadsheet), quoted fields, pt-BR numbers (`1.234,56`), dates
//! `DD/MM/YYYY HH:MM:SS` and the literal `(none)` for an empty cell. Header names are matched
//! trimmed and case-insensitively; their capitalisation differs between exports.
//!
//! A bad row never stops the run: it becomes one [`CsvRowError`] per bad cell, naming the line
//! and the column. Only a missing required column fails the whole file ([`CsvError`]).

use super::records::{Field, RecordError, SaleRecord, SaleStatus, UnknownStatus};
use lms_bridge_shared::event::Amount;
use lms_bridge_shared::{ChargeId, Email, ProductId, Timestamp};
use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use time::macros::{format_description, offset};
use time::{Date, PrimitiveDateTime, UtcOffset};

/// The export's column headers this reader uses.
pub mod columns {
    /// The transaction code (required).
    pub const TRANSACTION: &str = "Código da transação";
    /// The transaction status, in Portuguese (required).
    pub const STATUS: &str = "Status da transação";
    /// When the order was placed.
    pub const ORDER_DATE: &str = "Data da transação";
    /// When the payment was confirmed: the approval time.
    pub const APPROVED_DATE: &str = "Confirmação do pagamento";
    /// The product id (required).
    pub const PRODUCT_ID: &str = "Código do produto";
    /// The product name.
    pub const PRODUCT_NAME: &str = "Produto";
    /// The offer code.
    pub const OFFER: &str = "Código do preço";
    /// The currency the buyer paid in.
    pub const CURRENCY: &str = "Moeda de compra";
    /// What the buyer paid, taxes included.
    pub const PRICE: &str = "Valor de compra com impostos";
    /// The buyer's name.
    pub const BUYER_NAME: &str = "Comprador(a)";
    /// The buyer's email (required).
    pub const BUYER_EMAIL: &str = "Email do(a) Comprador(a)";
    /// The kind of charge (`2a cobrança`, `Recuperador Inteligente`, …).
    pub const CHARGE_KIND: &str = "Tipo de cobrança";

    /// Without these a row states no fact, so a file lacking one is refused whole.
    pub const REQUIRED: [&str; 4] = [TRANSACTION, STATUS, PRODUCT_ID, BUYER_EMAIL];
    /// Every column read.
    pub const ALL: [&str; 12] = [
        TRANSACTION,
        STATUS,
        ORDER_DATE,
        APPROVED_DATE,
        PRODUCT_ID,
        PRODUCT_NAME,
        OFFER,
        CURRENCY,
        PRICE,
        BUYER_NAME,
        BUYER_EMAIL,
        CHARGE_KIND,
    ];
}

/// What an export yields: the rows read, and one error per bad cell of the rows that were not.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CsvSales {
    /// The good rows, in file order.
    pub rows: Vec<SaleRecord>,
    /// The bad cells, in file order.
    pub errors: Vec<CsvRowError>,
}

/// One bad cell (or unreadable row) of the export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsvRowError {
    /// The file's line where the row starts (the header is line 1).
    pub line: usize,
    /// What is wrong, naming the column: ``column `Status da transação`: unknown status `X` ``.
    pub message: String,
}

impl fmt::Display for CsvRowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

/// Why a file is not a usable export at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CsvError {
    /// No header line.
    #[error("the file is empty")]
    Empty,
    /// A column every row needs is absent.
    #[error("missing column `{0}`")]
    MissingColumn(&'static str),
    /// The header line cannot be read.
    #[error("unreadable header: {0}")]
    Header(String),
}

/// Reads an export. Bad rows are reported in [`CsvSales::errors`] and skipped.
pub fn read_sales_csv(bytes: &[u8]) -> Result<CsvSales, CsvError> {
    let text = decode(bytes);
    let mut reader = ::csv::ReaderBuilder::new()
        .delimiter(sniff_delimiter(&text))
        .has_headers(false)
        // A short row is read as far as it goes; its missing cells are absent.
        .flexible(true)
        .from_reader(text.as_bytes());
    let mut record = ::csv::StringRecord::new();
    match reader.read_record(&mut record) {
        Ok(true) => {}
        Ok(false) => return Err(CsvError::Empty),
        Err(e) => return Err(CsvError::Header(e.to_string())),
    }
    // A header repeated further right does not shadow the first.
    let mut header: HashMap<String, usize> = HashMap::new();
    for (i, name) in record.iter().enumerate() {
        header.entry(header_key(name)).or_insert(i);
    }
    let index: HashMap<&'static str, usize> =
        columns::ALL.iter().filter_map(|c| Some((*c, *header.get(&header_key(c))?))).collect();
    if let Some(missing) = columns::REQUIRED.iter().find(|c| !index.contains_key(*c)) {
        return Err(CsvError::MissingColumn(missing));
    }

    let mut sales = CsvSales::default();
    let mut lines = Lines { text: text.as_bytes(), at: 0, line: 1 };
    loop {
        let before = reader.position().byte();
        match reader.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {
                let line = lines.of(record.position().map_or(before, ::csv::Position::byte));
                let cell = |column: &'static str| index.get(column).and_then(|&i| record.get(i)).and_then(cell_value);
                if record.iter().all(|c| cell_value(c).is_none()) {
                    continue;
                }
                match read_row(cell) {
                    Ok(sale) => sales.rows.push(sale),
                    Err(errors) => {
                        sales.errors.extend(errors.into_iter().map(|e| CsvRowError { line, message: e.to_string() }))
                    }
                }
            }
            Err(e) => {
                let line = lines.of(e.position().map_or(before, ::csv::Position::byte));
                sales.errors.push(CsvRowError { line, message: format!("unreadable row: {e}") });
                // The reader resumes after a bad record; one that does not move on would loop.
                if reader.position().byte() == before {
                    break;
                }
            }
        }
    }
    Ok(sales)
}

/// Line numbers from byte offsets. The reader's own line count lags by one in CRLF files (it
/// counts a record's `\n` when it reads the next one), so lines are counted here: the line of
/// a record is that of its first byte past any line break. A line break is `\r\n`, `\n` or a
/// lone `\r`, as for the reader, which ends records at each.
struct Lines<'a> {
    text: &'a [u8],
    /// Bytes counted so far, and the line `at` is on. Offsets only grow.
    at: usize,
    line: usize,
}

impl Lines<'_> {
    fn of(&mut self, byte: u64) -> usize {
        let mut start = usize::try_from(byte).unwrap_or(usize::MAX).min(self.text.len());
        while self.text.get(start).is_some_and(|b| matches!(b, b'\r' | b'\n')) {
            start += 1;
        }
        if start > self.at {
            let text = self.text;
            let breaks = (self.at..start).filter(|&i| match text[i] {
                b'\n' => true,
                b'\r' => text.get(i + 1) != Some(&b'\n'),
                _ => false,
            });
            self.line += breaks.count();
            self.at = start;
        }
        self.line
    }
}

/// UTF-8 (a BOM dropped), else latin-1: every byte is the code point of the same value. A file
/// saved as Windows-1252 reads the same but for 0x80–0x9F (curly quotes, €, …), rare in the
/// names and codes read.
fn decode(bytes: &[u8]) -> Cow<'_, str> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    match std::str::from_utf8(bytes) {
        Ok(text) => Cow::Borrowed(text),
        Err(_) => Cow::Owned(bytes.iter().map(|&b| char::from(b)).collect()),
    }
}

/// The delimiter the header line uses most, outside quotes: `;`, `,` or tab (`;` on a tie).
fn sniff_delimiter(text: &str) -> u8 {
    let header = text.split('\n').next().unwrap_or_default();
    let mut counts = [(b';', 0usize), (b',', 0), (b'\t', 0)];
    let mut quoted = false;
    for c in header.bytes() {
        match c {
            b'"' => quoted = !quoted,
            _ if quoted => {}
            _ => counts.iter_mut().filter(|(d, _)| *d == c).for_each(|(_, n)| *n += 1),
        }
    }
    // `max_by_key` keeps the last of equal counts; reversed, that is the first listed.
    counts.iter().rev().max_by_key(|(_, n)| *n).map_or(b';', |(d, _)| *d)
}

fn header_key(name: &str) -> String {
    name.trim().trim_start_matches('\u{feff}').split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase()
}

/// A cell's text, trimmed; blank and `(none)` are absent.
fn cell_value(text: &str) -> Option<&str> {
    Some(text.trim()).filter(|t| !t.is_empty() && !t.eq_ignore_ascii_case("(none)"))
}

/// One data row, every bad cell reported.
fn read_row<'a>(cell: impl Fn(&'static str) -> Option<&'a str>) -> Result<SaleRecord, Vec<RecordError>> {
    let mut errors = Vec::new();
    let required = |column: &'static str| cell(column).ok_or(RecordError::Missing { field: Field::Column(column) });

    let transaction = take(
        &mut errors,
        required(columns::TRANSACTION).and_then(|raw| {
            let (code, charge) = strip_charge_suffix(raw);
            let id = ChargeId::parse(code)
                .map_err(|_| RecordError::invalid(Field::Column(columns::TRANSACTION), raw, "not a usable id"))?;
            Ok((id, charge))
        }),
    );
    let status = take(
        &mut errors,
        required(columns::STATUS).and_then(|raw| {
            parse_status(raw).map_err(|status| RecordError::Status { field: Field::Column(columns::STATUS), status })
        }),
    );
    let product_id = take(
        &mut errors,
        required(columns::PRODUCT_ID).and_then(|raw| {
            ProductId::parse(raw)
                .map_err(|_| RecordError::invalid(Field::Column(columns::PRODUCT_ID), raw, "not a usable id"))
        }),
    );
    let buyer_email = take(
        &mut errors,
        required(columns::BUYER_EMAIL).and_then(|raw| {
            Email::parse(raw)
                .map_err(|_| RecordError::Email { field: Field::Column(columns::BUYER_EMAIL), whose: "buyer" })
        }),
    );
    let order_at = take(&mut errors, date(cell(columns::ORDER_DATE), columns::ORDER_DATE));
    let approved_at = take(&mut errors, date(cell(columns::APPROVED_DATE), columns::APPROVED_DATE));
    let price = take(&mut errors, cell(columns::PRICE).map(number_pt).transpose());
    let (
        Some((transaction, charge)),
        Some(status),
        Some(product_id),
        Some(buyer_email),
        Some(order_at),
        Some(approved_at),
        Some(price),
    ) = (transaction, status, product_id, buyer_email, order_at, approved_at, price)
    else {
        return Err(errors);
    };
    let amount = price
        .zip(cell(columns::CURRENCY))
        .map(|(value, currency)| Amount { value, currency: currency.to_ascii_uppercase() });
    // A later charge of the same purchase (`C2`, …) is not the sale itself [?]: marked like a
    // recurring charge so it cannot fail or revoke the purchase its first charge stands for.
    let later_charge = charge.is_some_and(|n| n >= 2);
    let is_subscription = match (charge_kind(cell(columns::CHARGE_KIND)), later_charge) {
        (_, true) => Some(true),
        (kind, false) => kind,
    };
    Ok(SaleRecord {
        transaction,
        status,
        product_id,
        product_name: cell(columns::PRODUCT_NAME).map(str::to_owned),
        offer_code: cell(columns::OFFER).map(str::to_owned),
        buyer_email,
        buyer_name: cell(columns::BUYER_NAME).map(str::to_owned),
        order_at,
        approved_at,
        is_subscription,
        amount,
    })
}

/// The value, or `None` with its error kept: every bad cell of a row is reported.
fn take<T>(errors: &mut Vec<RecordError>, result: Result<T, RecordError>) -> Option<T> {
    result.map_err(|e| errors.push(e)).ok()
}

/// A transaction code without the `C1`/`C2`… suffix one of the export's parsers strips, and
/// the suffix's number. The API and the webhooks name the purchase by the bare code (`HP` and
/// digits), and the same fact must get the same event id from both sources. Only that shape is
/// touched: other codes (`TX5B9C2977`) may end in `C` and digits as part of the code.
fn strip_charge_suffix(code: &str) -> (&str, Option<u32>) {
    let Some(at) = code.rfind(['C', 'c']) else { return (code, None) };
    let (base, suffix) = (&code[..at], &code[at + 1..]);
    let hp_code = base.len() > 2
        && base.get(..2).is_some_and(|p| p.eq_ignore_ascii_case("HP"))
        && base[2..].bytes().all(|b| b.is_ascii_digit());
    let numbered = (1..=3).contains(&suffix.len()) && suffix.bytes().all(|b| b.is_ascii_digit());
    match (hp_code && numbered, suffix.parse()) {
        (true, Ok(n)) => (base, Some(n)),
        _ => (code, None),
    }
}

/// The export's Portuguese statuses, and the REST API's spellings.
fn parse_status(text: &str) -> Result<SaleStatus, UnknownStatus> {
    let status = match text.trim().to_lowercase().as_str() {
        "aprovado" | "aprovada" => SaleStatus::Approved,
        "completo" | "completa" => SaleStatus::Complete,
        "cancelado" | "cancelada" => SaleStatus::Cancelled,
        "reembolsado" | "reembolsada" => SaleStatus::Refunded,
        "parcialmente reembolsado" | "parcialmente reembolsada" => SaleStatus::PartiallyRefunded,
        "aguardando pagamento" => SaleStatus::WaitingPayment,
        "expirado" | "expirada" => SaleStatus::Expired,
        // A refused card was never approved: a failed charge.
        "recusado" | "recusada" => SaleStatus::NoFunds,
        "chargeback" => SaleStatus::Chargeback,
        "reclamado" | "reclamada" | "protestado" | "protestada" => SaleStatus::Protested,
        "bloqueado" | "bloqueada" => SaleStatus::Blocked,
        "atrasado" | "atrasada" => SaleStatus::Overdue,
        _ => return SaleStatus::parse(text),
    };
    Ok(status)
}

/// Whether `Tipo de cobrança` marks a charge of a subscription or of a smart payment: `Na
/// cobrança` (the N-th charge) or `Recuperador Inteligente`. `Único` is a one-off; any other
/// value says nothing.
fn charge_kind(text: Option<&str>) -> Option<bool> {
    let text = text?.trim().to_lowercase();
    let nth_charge = text.strip_suffix("cobrança").map(str::trim_end).is_some_and(|n| {
        let digits = n.trim_end_matches(['a', 'ª', 'º', '.']);
        !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
    });
    if nth_charge || text == "recuperador inteligente" {
        Some(true)
    } else if text == "único" || text == "unico" || text == "pagamento único" {
        Some(false)
    } else {
        None
    }
}

/// `1.234,56` → `1234.56`: `.` groups thousands, `,` starts the decimals.
fn number_pt(text: &str) -> Result<String, RecordError> {
    let bad = || RecordError::invalid(Field::Column(columns::PRICE), text, "not a pt-BR number");
    let (sign, digits) = match text.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", text),
    };
    let (whole, decimals) = match digits.split_once(',') {
        Some((whole, decimals)) => (whole, Some(decimals)),
        None => (digits, None),
    };
    let groups: Vec<&str> = whole.split('.').collect();
    let grouped = groups.len() == 1 || (matches!(groups[0].len(), 1..=3) && groups[1..].iter().all(|g| g.len() == 3));
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !grouped || !groups.iter().all(|g| all_digits(g)) || !decimals.is_none_or(all_digits) {
        return Err(bad());
    }
    let whole = groups.concat();
    Ok(match decimals {
        Some(decimals) => format!("{sign}{whole}.{decimals}"),
        None => format!("{sign}{whole}"),
    })
}

/// The export writes São Paulo wall-clock time. Brazil has had no daylight saving time since
/// 2019, so that is UTC−03:00 for every date an export of recent sales holds.
const SAO_PAULO: UtcOffset = offset!(-3);

/// `DD/MM/YYYY HH:MM:SS` (or `HH:MM`, or a bare date: midnight) in São Paulo time.
fn date(text: Option<&str>, column: &'static str) -> Result<Option<Timestamp>, RecordError> {
    let Some(text) = text else { return Ok(None) };
    let with_seconds = format_description!("[day]/[month]/[year] [hour]:[minute]:[second]");
    let with_minutes = format_description!("[day]/[month]/[year] [hour]:[minute]");
    let date_only = format_description!("[day]/[month]/[year]");
    let local = PrimitiveDateTime::parse(text, with_seconds)
        .or_else(|_| PrimitiveDateTime::parse(text, with_minutes))
        .or_else(|_| Date::parse(text, date_only).map(Date::midnight))
        .map_err(|_| RecordError::invalid(Field::Column(column), text, "not DD/MM/YYYY HH:MM:SS"))?;
    Ok(Some(Timestamp::from_offset(local.assume_offset(SAO_PAULO))))
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/hotmart-sales-export.csv");

    fn ts(text: &str) -> Timestamp {
        Timestamp::parse_rfc3339(text).unwrap()
    }

    fn fixture() -> CsvSales {
        let bytes = std::fs::read(FIXTURE).unwrap();
        assert!(bytes.starts_with(b"\xEF\xBB\xBF"), "the fixture keeps its BOM");
        read_sales_csv(&bytes).unwrap()
    }

    #[test]
    fn the_fixture_reads_its_good_rows_and_names_each_bad_cell() {
        let sales = fixture();
        let rows: Vec<(&str, SaleStatus)> = sales.rows.iter().map(|r| (r.transaction.as_str(), r.status)).collect();
        assert_eq!(
            rows,
            [
                ("HP16015479281022", SaleStatus::Approved),
                ("HP22200000000001", SaleStatus::Complete),
                ("HP22200000000002", SaleStatus::Refunded),
                ("HP22200000000003", SaleStatus::Chargeback),
                ("HP22200000000004", SaleStatus::Cancelled),
                ("HP22200000000005", SaleStatus::WaitingPayment),
                ("HP22200000000006", SaleStatus::NoFunds),
                ("HP22200000000008", SaleStatus::Approved),
                ("HP22200000000009", SaleStatus::Approved),
                ("HP22200000000011", SaleStatus::PartiallyRefunded),
            ]
        );
        let errors: Vec<String> = sales.errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            errors,
            [
                "line 9: column `Status da transação`: unknown status `Pendurado`",
                "line 12: column `Email do(a) Comprador(a)`: buyer email is invalid",
                "line 12: column `Confirmação do pagamento`: invalid value `31/02/2026 10:00:00` (not DD/MM/YYYY HH:MM:SS)",
                "line 14: column `Código do produto`: missing",
            ]
        );
        assert!(!errors.concat().contains("nao-e-email"), "emails never appear in errors");
    }

    #[test]
    fn a_row_reads_dates_in_sao_paulo_time_numbers_in_pt_br_and_none_as_empty() {
        let sales = fixture();
        let ana = &sales.rows[0];
        // 24/11/2025 11:23:10 in São Paulo: the approval time of the webhook fixture.
        assert_eq!(ana.approved_at, Some(ts("2025-11-24T14:23:10Z")));
        assert_eq!(ana.order_at, Some(ts("2025-11-24T14:23:00Z")));
        assert_eq!(ana.product_id.as_str(), "4774438");
        assert_eq!(ana.product_name.as_deref(), Some("Curso de Exemplo"));
        assert_eq!(ana.offer_code.as_deref(), Some("test"));
        assert_eq!(ana.buyer_email.as_str(), "ana.souza@example.com");
        assert_eq!(ana.amount, Some(Amount { value: "1500.00".into(), currency: "BRL".into() }));
        assert_eq!(ana.is_subscription, Some(false));
        let bruno = &sales.rows[1];
        // A quoted name holding the delimiter.
        assert_eq!(bruno.buyer_name.as_deref(), Some("Souza; Bruno"));
        assert_eq!(bruno.amount.as_ref().map(|a| a.value.as_str()), Some("1234.56"));
        // `(none)` is empty.
        let cancelled = &sales.rows[4];
        assert_eq!((cancelled.approved_at, cancelled.offer_code.as_deref()), (None, None));
        // A date without a time is midnight in São Paulo.
        assert_eq!(sales.rows[5].order_at, Some(ts("2026-02-01T03:00:00Z")));
    }

    #[test]
    fn recurring_charges_are_marked_and_charge_suffixes_stripped() {
        let sales = fixture();
        let kinds: Vec<(&str, Option<bool>)> =
            sales.rows.iter().map(|r| (r.transaction.as_str(), r.is_subscription)).collect();
        assert!(kinds.contains(&("HP22200000000008", Some(true))), "Recuperador Inteligente, C1 stripped: {kinds:?}");
        assert!(kinds.contains(&("HP22200000000009", Some(true))), "2a cobrança: {kinds:?}");
        assert_eq!(strip_charge_suffix("HP22200000000008C2"), ("HP22200000000008", Some(2)));
        assert_eq!(strip_charge_suffix("hp123c1"), ("hp123", Some(1)));
        for untouched in ["HP16015479281022", "TX5B9C2977", "HPC1", "HP12C", "HP12C1234"] {
            assert_eq!(strip_charge_suffix(untouched), (untouched, None));
        }
        assert_eq!(charge_kind(Some("1ª cobrança")), Some(true));
        assert_eq!(charge_kind(Some("12a cobrança")), Some(true));
        assert_eq!(charge_kind(Some("Único")), Some(false));
        assert_eq!(charge_kind(Some("Parcelamento")), None);
        assert_eq!(charge_kind(None), None);
    }

    #[test]
    fn statuses_read_in_portuguese_and_in_the_rest_spelling() {
        let cases = [
            ("Aprovado", SaleStatus::Approved),
            ("completo", SaleStatus::Complete),
            ("Cancelado", SaleStatus::Cancelled),
            ("Reembolsado", SaleStatus::Refunded),
            ("Aguardando pagamento", SaleStatus::WaitingPayment),
            ("Expirado", SaleStatus::Expired),
            ("Recusado", SaleStatus::NoFunds),
            ("Chargeback", SaleStatus::Chargeback),
            ("Reclamado", SaleStatus::Protested),
            ("Protestado", SaleStatus::Protested),
            ("Parcialmente reembolsado", SaleStatus::PartiallyRefunded),
            ("Bloqueado", SaleStatus::Blocked),
            ("Atrasado", SaleStatus::Overdue),
            ("UNDER_ANALISYS", SaleStatus::UnderAnalysis),
            ("PRINTED_BILLET", SaleStatus::PrintedBillet),
        ];
        for (text, status) in cases {
            assert_eq!(parse_status(text), Ok(status), "{text}");
        }
        assert_eq!(parse_status("Pendurado"), Err(UnknownStatus("Pendurado".into())));
    }

    #[test]
    fn pt_br_numbers() {
        for (text, value) in
            [("1.234,56", "1234.56"), ("997", "997"), ("0,5", "0.5"), ("-12,30", "-12.30"), ("1.000.000", "1000000")]
        {
            assert_eq!(number_pt(text).unwrap(), value, "{text}");
        }
        for bad in ["1,234.56", "12.34", "abc", "1.2345,00", ",5", "1,", "R$ 10,00"] {
            assert!(number_pt(bad).is_err(), "{bad}");
        }
    }

    const SMALL: &str =
        "Código da transação;Status da transação;Código do produto;Comprador(a);Email do(a) Comprador(a)\n\
                         HP1;Aprovado;4774438;João Brandão;joao@example.com\n";

    #[test]
    fn a_latin1_export_reads_like_utf8() {
        let latin1: Vec<u8> = SMALL.chars().map(|c| u8::try_from(u32::from(c)).unwrap()).collect();
        assert!(std::str::from_utf8(&latin1).is_err(), "really latin-1");
        let sales = read_sales_csv(&latin1).unwrap();
        assert_eq!(sales.errors, []);
        assert_eq!(sales.rows[0].buyer_name.as_deref(), Some("João Brandão"));
        assert_eq!(sales, read_sales_csv(SMALL.as_bytes()).unwrap());
    }

    #[test]
    fn commas_and_tabs_are_sniffed_and_headers_matched_loosely() {
        let comma =
            "\"código da transação\" , STATUS DA TRANSAÇÃO,Código do produto,email do(a)  comprador(a),Produto\r\n\
                     HP1,Aprovado,4774438,ana@example.com,\"Curso; com, vírgula\"\r\n";
        let sales = read_sales_csv(comma.as_bytes()).unwrap();
        assert_eq!(sales.errors, []);
        assert_eq!(sales.rows[0].product_name.as_deref(), Some("Curso; com, vírgula"));
        let tab = SMALL.replace(';', "\t");
        assert_eq!(read_sales_csv(tab.as_bytes()).unwrap(), read_sales_csv(SMALL.as_bytes()).unwrap());
    }

    #[test]
    fn a_missing_required_column_fails_the_whole_file() {
        let no_email = "Código da transação;Status da transação;Código do produto\nHP1;Aprovado;1\n";
        assert_eq!(read_sales_csv(no_email.as_bytes()), Err(CsvError::MissingColumn("Email do(a) Comprador(a)")));
        assert_eq!(
            CsvError::MissingColumn(columns::BUYER_EMAIL).to_string(),
            "missing column `Email do(a) Comprador(a)`"
        );
        assert_eq!(read_sales_csv(b""), Err(CsvError::Empty));
        assert_eq!(read_sales_csv(b"\xEF\xBB\xBF"), Err(CsvError::Empty));
    }

    #[test]
    fn a_lone_carriage_return_ends_a_line_as_it_ends_a_record() {
        // Found by fuzzing (fuzz/, sales_csv): the reader splits records at a lone `\r` (old
        // Mac line ends, or a stray one in the header), and rows after it were all "line 1".
        let text = SMALL.replace("\n", "\r").replace("Aprovado", "Pendurado") + "HP2;Pendurado;1;Bia;bia@example.com\r";
        let sales = read_sales_csv(text.as_bytes()).unwrap();
        let lines: Vec<usize> = sales.errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, [2, 3]);
        // Mixed with `\r\n` and `\n`, each break counts once.
        let mixed =
            SMALL.replace("\n", "\r\n").replace("Aprovado", "Pendurado") + "\rHP2;Pendurado;1;Bia;bia@example.com\n";
        let lines: Vec<usize> = read_sales_csv(mixed.as_bytes()).unwrap().errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, [2, 4]);
    }

    #[test]
    fn line_numbers_count_blank_lines_and_quoted_line_breaks() {
        let text = format!(
            "{SMALL}\n\"HP2\";Aprovado;1;\"Ana\nSouza\";ana@example.com\nHP3;Pendurado;1;Bia;bia@example.com\n"
        );
        let sales = read_sales_csv(text.as_bytes()).unwrap();
        assert_eq!(sales.rows.len(), 2);
        assert_eq!(sales.rows[1].buyer_name.as_deref(), Some("Ana\nSouza"));
        assert_eq!(
            sales.errors.iter().map(ToString::to_string).collect::<Vec<_>>(),
            ["line 6: column `Status da transação`: unknown status `Pendurado`"]
        );
    }
}

//! Any bytes read as Hotmart's CSV sales export (`lms-bridge backfill --csv`), and the rows
//! read turned into the events the backfill publishes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lms_bridge_backend::backfill::{read_sales_csv, sale_events};
use lms_bridge_fuzz::{assert_round_trips, received_at};

fuzz_target!(|bytes: &[u8]| {
    let Ok(sales) = read_sales_csv(bytes) else { return };
    // Errors name a line of the file past the header (line 1), in file order. (However its
    // line breaks are spelled, a file has no more lines than `\r` and `\n` bytes, plus one.)
    let last_line = bytes.iter().filter(|&&b| b == b'\n' || b == b'\r').count() + 1;
    let mut previous = 2;
    for error in &sales.errors {
        assert!((previous..=last_line).contains(&error.line), "line {} after {previous}, of {last_line}", error.line);
        previous = error.line;
    }
    for sale in &sales.rows {
        for event in sale_events(sale, received_at()) {
            assert_round_trips(&event);
        }
    }
});

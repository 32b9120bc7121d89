//! Record readers behind the `source` module's tables: they turn raw bytes into Arrow batches of the source
//! layout (`id`, `text`, declared extra columns, `source_file`, `source_line`) and every record
//! they cannot use into a [`Reject`] with its file, line and reason.

use std::io::{self, BufRead};
use std::sync::Arc;

use arrow::array::{
    Array, ArrayBuilder, ArrayRef, AsArray, BooleanBuilder, Float64Builder, Int64Builder, RecordBatch, StringBuilder,
    UInt64Builder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use serde_json::Value;

use crate::record::Reject;

/// Column names of the layout that every source produces.
pub const ID: &str = "id";
pub const TEXT: &str = "text";
pub const SOURCE_FILE: &str = "source_file";
pub const SOURCE_LINE: &str = "source_line";

/// How records map onto the source layout.
#[derive(Clone, Debug)]
pub struct Layout {
    pub schema: SchemaRef,
    pub text_column: String,
    pub id_column: String,
    /// Extra columns read by name from each record.
    pub extras: Vec<(String, DataType)>,
    pub max_record_bytes: usize,
    pub batch_rows: usize,
}

impl Layout {
    pub fn new(text_column: &str, id_column: &str, extras: Vec<(String, DataType)>) -> anyhow::Result<Self> {
        let mut fields = vec![Field::new(ID, DataType::Utf8, false), Field::new(TEXT, DataType::Utf8, false)];
        // VARCHAR may arrive as Utf8View or LargeUtf8 depending on session settings.
        let extras: Vec<(String, DataType)> = extras
            .into_iter()
            .map(|(n, t)| match t {
                DataType::Utf8View | DataType::LargeUtf8 => (n, DataType::Utf8),
                t => (n, t),
            })
            .collect();
        for (name, ty) in &extras {
            anyhow::ensure!(
                matches!(ty, DataType::Utf8 | DataType::Int64 | DataType::Float64 | DataType::Boolean),
                "column {name}: only VARCHAR, BIGINT, DOUBLE and BOOLEAN extra columns are supported, not {ty}"
            );
            fields.push(Field::new(name, ty.clone(), true));
        }
        fields.push(Field::new(SOURCE_FILE, DataType::Utf8, false));
        fields.push(Field::new(SOURCE_LINE, DataType::UInt64, false));
        Ok(Layout {
            schema: Arc::new(Schema::new(fields)),
            text_column: text_column.into(),
            id_column: id_column.into(),
            extras,
            max_record_bytes: 16 << 20,
            batch_rows: 1024,
        })
    }
}

/// Where readers deliver their output. `batch` returns false when nobody wants more.
pub trait RecordSink {
    fn batch(&mut self, batch: RecordBatch) -> bool;
    fn reject(&mut self, reject: Reject);
}

/// Why a text cannot be a document, if it cannot.
pub fn text_problem(text: &str) -> Option<&'static str> {
    if text.trim().is_empty() {
        Some("empty text")
    } else if text.contains('\0') {
        Some("text contains NUL bytes")
    } else {
        None
    }
}

/// A stable id for a record that has none: a hash of its file and line.
pub fn generated_id(file: &str, line: u64) -> String {
    format!("{:016x}", xxhash_rust::xxh3::xxh3_64(format!("{file}:{line}").as_bytes()))
}

enum Extra {
    Utf8(StringBuilder),
    I64(Int64Builder),
    F64(Float64Builder),
    Bool(BooleanBuilder),
}

impl Extra {
    fn new(ty: &DataType) -> Self {
        match ty {
            DataType::Int64 => Extra::I64(Int64Builder::new()),
            DataType::Float64 => Extra::F64(Float64Builder::new()),
            DataType::Boolean => Extra::Bool(BooleanBuilder::new()),
            _ => Extra::Utf8(StringBuilder::new()),
        }
    }

    fn push_json(&mut self, v: Option<&Value>) {
        let v = v.filter(|v| !v.is_null());
        match self {
            Extra::Utf8(b) => b.append_option(v.map(|v| match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })),
            Extra::I64(b) => b.append_option(v.and_then(Value::as_i64)),
            Extra::F64(b) => b.append_option(v.and_then(Value::as_f64)),
            Extra::Bool(b) => b.append_option(v.and_then(Value::as_bool)),
        }
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            Extra::Utf8(b) => Arc::new(b.finish()),
            Extra::I64(b) => Arc::new(b.finish()),
            Extra::F64(b) => Arc::new(b.finish()),
            Extra::Bool(b) => Arc::new(b.finish()),
        }
    }
}

/// Accumulates rows of the source layout.
pub struct BatchBuilder {
    layout: Layout,
    ids: StringBuilder,
    texts: StringBuilder,
    extras: Vec<Extra>,
    files: StringBuilder,
    lines: UInt64Builder,
    text_bytes: usize,
}

impl BatchBuilder {
    pub fn new(layout: &Layout) -> Self {
        BatchBuilder {
            extras: layout.extras.iter().map(|(_, t)| Extra::new(t)).collect(),
            layout: layout.clone(),
            ids: StringBuilder::new(),
            texts: StringBuilder::new(),
            files: StringBuilder::new(),
            lines: UInt64Builder::new(),
            text_bytes: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Full when it holds `batch_rows` rows or 8 MiB of text.
    pub fn is_full(&self) -> bool {
        self.len() >= self.layout.batch_rows || self.text_bytes >= 8 << 20
    }

    fn push_common(&mut self, id: &str, text: &str, file: &str, line: u64) {
        self.ids.append_value(id);
        self.texts.append_value(text);
        self.files.append_value(file);
        self.lines.append_value(line);
        self.text_bytes += text.len();
    }

    pub fn finish(&mut self) -> RecordBatch {
        let mut cols: Vec<ArrayRef> = vec![Arc::new(self.ids.finish()), Arc::new(self.texts.finish())];
        cols.extend(self.extras.iter_mut().map(Extra::finish));
        cols.push(Arc::new(self.files.finish()));
        cols.push(Arc::new(self.lines.finish()));
        self.text_bytes = 0;
        RecordBatch::try_new(self.layout.schema.clone(), cols).expect("builder columns match the layout")
    }

    fn flush_if_full(&mut self, out: &mut dyn RecordSink) -> bool {
        !self.is_full() || out.batch(self.finish())
    }

    fn flush(&mut self, out: &mut dyn RecordSink) -> bool {
        self.is_empty() || out.batch(self.finish())
    }
}

/// Reads one line of at most `max` bytes into `buf` (without the newline). Returns the line's
/// full length, or `None` at end of input; a longer line is consumed but only `max + 1` bytes
/// are kept.
fn read_line_limited(r: &mut dyn BufRead, buf: &mut Vec<u8>, max: usize) -> io::Result<Option<usize>> {
    buf.clear();
    let mut total = 0;
    let mut any = false;
    loop {
        let avail = r.fill_buf()?;
        if avail.is_empty() {
            break;
        }
        any = true;
        let (take, done) = match avail.iter().position(|&b| b == b'\n') {
            Some(i) => (i, true),
            None => (avail.len(), false),
        };
        let room = (max + 1).saturating_sub(buf.len()).min(take);
        buf.extend_from_slice(&avail[..room]);
        total += take;
        r.consume(take + usize::from(done));
        if done {
            break;
        }
    }
    if buf.last() == Some(&b'\r') && total <= max {
        buf.pop();
        total -= 1;
    }
    Ok(any.then_some(total))
}

/// Reads JSON Lines: one object per line with a string text field. Blank lines are skipped;
/// every other line is either a row or a reject.
pub fn read_jsonl(r: &mut dyn BufRead, file: &str, layout: &Layout, out: &mut dyn RecordSink) {
    let mut b = BatchBuilder::new(layout);
    let mut buf = Vec::new();
    let mut line_no = 0u64;
    loop {
        let len = match read_line_limited(r, &mut buf, layout.max_record_bytes) {
            Ok(Some(len)) => len,
            Ok(None) => break,
            Err(e) => {
                out.reject(Reject::read(file, line_no + 1, format!("read error: {e}; rest of file unread"), &[]));
                break;
            }
        };
        line_no += 1;
        // A byte order mark opens some files written on Windows: it is not part of the record.
        if line_no == 1 && buf.starts_with(b"\xEF\xBB\xBF") {
            buf.drain(..3);
        }
        if len > layout.max_record_bytes {
            let why = format!("record too long: {len} bytes > max_record_bytes {}", layout.max_record_bytes);
            out.reject(Reject::read(file, line_no, why, &buf));
            continue;
        }
        if buf.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let line = match std::str::from_utf8(&buf) {
            Ok(s) => s,
            Err(e) => {
                out.reject(Reject::read(file, line_no, format!("invalid UTF-8: at byte {}", e.valid_up_to()), &buf));
                continue;
            }
        };
        let obj = match serde_json::from_str::<Value>(line) {
            Ok(Value::Object(o)) => o,
            Ok(_) => {
                out.reject(Reject::read(file, line_no, "JSON line is not an object", &buf));
                continue;
            }
            Err(e) => {
                out.reject(Reject::read(file, line_no, format!("malformed JSON: {e}"), &buf));
                continue;
            }
        };
        let text = match obj.get(&layout.text_column) {
            Some(Value::String(s)) => s.as_str(),
            None | Some(Value::Null) => {
                out.reject(Reject::read(file, line_no, format!("missing text field {:?}", layout.text_column), &buf));
                continue;
            }
            Some(_) => {
                out.reject(Reject::read(
                    file,
                    line_no,
                    format!("text field {:?} is not a string", layout.text_column),
                    &buf,
                ));
                continue;
            }
        };
        if let Some(why) = text_problem(text) {
            out.reject(Reject::read(file, line_no, why, &buf));
            continue;
        }
        let id = match obj.get(&layout.id_column) {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => generated_id(file, line_no),
        };
        b.push_common(&id, text, file, line_no);
        for ((name, _), e) in layout.extras.iter().zip(b.extras.iter_mut()) {
            e.push_json(obj.get(name));
        }
        if !b.flush_if_full(out) {
            return;
        }
    }
    b.flush(out);
}

/// Reads a whole plain-text object as one document whose id is its path.
pub fn read_text(bytes: &[u8], file: &str, layout: &Layout, out: &mut dyn RecordSink) {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    if bytes.len() > layout.max_record_bytes {
        let why = format!("record too long: over max_record_bytes {}", layout.max_record_bytes);
        return out.reject(Reject::read(file, 1, why, bytes));
    }
    let text = match std::str::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            return out.reject(Reject::read(file, 1, format!("invalid UTF-8: at byte {}", e.valid_up_to()), bytes));
        }
    };
    if let Some(why) = text_problem(text) {
        return out.reject(Reject::read(file, 1, why, bytes));
    }
    let mut b = BatchBuilder::new(layout);
    b.push_common(file, text, file, 1);
    for e in b.extras.iter_mut() {
        e.push_json(None);
    }
    b.flush(out);
}

/// Turns one decoded Parquet batch into layout rows; `first_row` is the 0-based index of its
/// first row in the file.
pub fn parquet_rows(
    batch: &RecordBatch,
    first_row: u64,
    file: &str,
    layout: &Layout,
    out: &mut dyn RecordSink,
) -> bool {
    let n = batch.num_rows();
    // Every row of a batch that cannot give text is a reject of its own, so counts stay per row.
    let reject_all = |out: &mut dyn RecordSink, why: String| {
        for i in 0..n {
            out.reject(Reject::read(file, first_row + i as u64 + 1, why.clone(), &[]));
        }
        true
    };
    let Some(text_col) = batch.column_by_name(&layout.text_column) else {
        return reject_all(out, format!("no text column {:?} in file", layout.text_column));
    };
    // A dictionary column (a pandas Categorical) is read as its values.
    let values = match text_col.data_type() {
        DataType::Dictionary(_, v) => v.as_ref(),
        t => t,
    };
    // Binary text is decoded row by row so one bad row does not fail the batch.
    let binary = matches!(values, DataType::Binary | DataType::LargeBinary | DataType::BinaryView);
    let textual = matches!(values, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View);
    if !binary && !textual {
        // As a JSON number in a text field is: each row is a reject, never text made of a number.
        let why = format!("text column {:?} is not a string ({})", layout.text_column, text_col.data_type());
        return reject_all(out, why);
    }
    let target = if binary { DataType::LargeBinary } else { DataType::Utf8 };
    let text_arr = match arrow::compute::cast(text_col, &target) {
        Ok(a) => a,
        Err(e) => {
            out.reject(Reject::read(file, 0, format!("text column cannot be read as text: {e}"), &[]));
            return true;
        }
    };
    let text_at = |i: usize| -> Result<Option<&str>, String> {
        if text_arr.is_null(i) {
            Ok(None)
        } else if binary {
            std::str::from_utf8(text_arr.as_binary::<i64>().value(i))
                .map(Some)
                .map_err(|e| format!("invalid UTF-8: at byte {}", e.valid_up_to()))
        } else {
            Ok(Some(text_arr.as_string::<i32>().value(i)))
        }
    };
    let cast = |name: &str, ty: &DataType| -> Option<ArrayRef> {
        let opts = arrow::compute::CastOptions { safe: true, ..Default::default() };
        batch.column_by_name(name).and_then(|c| arrow::compute::cast_with_options(c, ty, &opts).ok())
    };
    let ids = cast(&layout.id_column, &DataType::Utf8);
    let extras: Vec<Option<ArrayRef>> = layout.extras.iter().map(|(name, ty)| cast(name, ty)).collect();
    let mut b = BatchBuilder::new(layout);
    for i in 0..n {
        let t = text_at(i);
        let line = first_row + i as u64 + 1;
        let text = match t {
            Ok(Some(t)) => t,
            Ok(None) => {
                out.reject(Reject::read(file, line, format!("text column {:?} is null", layout.text_column), &[]));
                continue;
            }
            Err(why) => {
                out.reject(Reject::read(file, line, why, &[]));
                continue;
            }
        };
        if let Some(why) = text_problem(text) {
            out.reject(Reject::read(file, line, why, text.as_bytes()));
            continue;
        }
        let id = ids
            .as_ref()
            .map(|a| a.as_string::<i32>())
            .filter(|a| !a.is_null(i) && !a.value(i).is_empty())
            .map(|a| a.value(i).to_string())
            .unwrap_or_else(|| generated_id(file, line));
        b.push_common(&id, text, file, line);
        for (e, col) in b.extras.iter_mut().zip(&extras) {
            let v = col.as_ref().filter(|c| !c.is_null(i)).map(|c| json_of(c, i));
            e.push_json(v.as_ref());
        }
    }
    b.flush(out)
}

fn json_of(col: &ArrayRef, i: usize) -> Value {
    match col.data_type() {
        DataType::Int64 => col.as_primitive::<arrow::datatypes::Int64Type>().value(i).into(),
        DataType::Float64 => col.as_primitive::<arrow::datatypes::Float64Type>().value(i).into(),
        DataType::Boolean => col.as_boolean().value(i).into(),
        _ => col.as_string::<i32>().value(i).into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Collect {
        rows: Vec<(String, String, u64)>,
        rejects: Vec<Reject>,
    }
    impl RecordSink for Collect {
        fn batch(&mut self, b: RecordBatch) -> bool {
            let ids = b.column(0).as_string::<i32>();
            let texts = b.column(1).as_string::<i32>();
            let lines = b.column(b.num_columns() - 1).as_primitive::<arrow::datatypes::UInt64Type>();
            for i in 0..b.num_rows() {
                self.rows.push((ids.value(i).into(), texts.value(i).into(), lines.value(i)));
            }
            true
        }
        fn reject(&mut self, r: Reject) {
            self.rejects.push(r);
        }
    }

    #[test]
    fn jsonl_rows_and_rejects_reconcile() {
        let mut layout = Layout::new("text", "id", vec![("url".into(), DataType::Utf8)]).unwrap();
        layout.max_record_bytes = 64;
        let mut input: Vec<u8> = Vec::new();
        input.extend_from_slice(b"{\"id\":\"a\",\"text\":\"hello\",\"url\":\"u\"}\n");
        input.extend_from_slice(b"{not json\n");
        input.extend_from_slice(b"\n");
        input.extend_from_slice(b"{\"text\":\"bad \xff utf8\"}\n");
        input.extend_from_slice(b"{\"text\":\"nul \\u0000 inside\"}\n");
        input.extend_from_slice(b"{\"text\":\"   \"}\n");
        input.extend_from_slice(b"{\"other\":1}\r\n");
        input.extend_from_slice(format!("{{\"text\":\"{}\"}}\n", "x".repeat(100)).as_bytes());
        input.extend_from_slice(b"[1,2]\n");
        input.extend_from_slice(b"{\"text\":\"no id, last line, no newline\"}");
        let mut out = Collect::default();
        read_jsonl(&mut io::Cursor::new(input), "f.jsonl", &layout, &mut out);
        assert_eq!(out.rows.len(), 2);
        assert_eq!(out.rows[0], ("a".into(), "hello".into(), 1));
        assert_eq!(out.rows[1].2, 10);
        assert_eq!(out.rows[1].0, generated_id("f.jsonl", 10));
        let reasons: Vec<(u64, &str)> = out.rejects.iter().map(|r| (r.source_line, r.reason.as_str())).collect();
        let lines: Vec<u64> = reasons.iter().map(|r| r.0).collect();
        assert_eq!(lines, vec![2, 4, 5, 6, 7, 8, 9], "{reasons:?}");
        assert!(reasons[0].1.starts_with("malformed JSON"));
        assert!(reasons[1].1.starts_with("invalid UTF-8"));
        assert_eq!(reasons[2].1, "text contains NUL bytes");
        assert_eq!(reasons[3].1, "empty text");
        assert!(reasons[4].1.starts_with("missing text field"));
        assert!(reasons[5].1.starts_with("record too long"));
        assert_eq!(reasons[6].1, "JSON line is not an object");
    }

    #[test]
    fn text_objects() {
        let layout = Layout::new("text", "id", vec![]).unwrap();
        let mut out = Collect::default();
        read_text(b"a document", "d/1.txt", &layout, &mut out);
        read_text(b"\xff\xfe", "d/2.txt", &layout, &mut out);
        read_text(b"", "d/3.txt", &layout, &mut out);
        assert_eq!(out.rows, vec![("d/1.txt".into(), "a document".into(), 1)]);
        assert_eq!(out.rejects.len(), 2);
    }
}

//! The repository's query surface over a `rusqlite` connection, for SQLite's writer and readers.
//!
//! sqlx runs every SQLite connection on a thread of its own, and each statement is a round trip to
//! it: two context switches. The writer runs about a dozen statements per registration, one unit after
//! another, so those hops (not SQLite) bounded how many units a second one writer could commit
//! (`docs/PERFORMANCE.md`). Here a statement is a function call on the thread that runs the unit.
//!
//! The surface mirrors the part of sqlx the repository macros use (`query`, `query_as`, `bind`,
//! `execute`, `fetch_optional`, `fetch_all`, [`Row::try_get`]), so one repository serves sqlx's
//! connections and this one. Errors are `sqlx::Error`, so the row mappers and the unique-violation
//! check need no second version. The "futures" are ready at once: the work was done when they were
//! made.

use rusqlite::types::{FromSql, ToSql, Value, ValueRef};
use std::borrow::Cow;
use std::collections::HashMap;
use std::future::{Ready, ready};
use std::marker::PhantomData;
use std::sync::Arc;

/// A SQLite connection (the writer's, a reader's or the checkpointer's) with the statements it has
/// prepared, each kept with its shape for the next run.
pub(crate) struct NativeConn {
    prepared: Prepared,
    /// Kept by the writer's connection only (`remember_callbacks`).
    pub(crate) known_callbacks: Option<crate::repo::KnownCallbacks>,
}

self_cell::self_cell!(
    /// A connection and the statements prepared on it, which borrow it.
    struct Prepared {
        owner: rusqlite::Connection,
        #[not_covariant]
        dependent: Statements,
    }
);

// SAFETY: `Statement<'c>` is not `Send` only because it holds a `&'c Connection` and `Connection`
// is not `Sync` (its inner state is a `RefCell`). A `Prepared` owns the connection and every
// statement that borrows it, and lends them out only for the length of a call on `&self` or
// `&mut self` (`with_dependent_mut` cannot let a borrow escape), so whoever has the `Prepared`
// has all of them, and moving it moves all of them to one thread together: no other thread can
// hold a reference into it. It is not `Sync`, so two threads never share it. SQLite allows a
// connection and its statements to move between threads as long as one thread uses them at a time
// (they are opened `SQLITE_OPEN_NO_MUTEX`, multi-thread mode). rusqlite's own statement cache is
// made `Send` on the same grounds.
#[allow(unsafe_code)]
unsafe impl Send for Prepared {}

impl NativeConn {
    pub(crate) fn new(conn: rusqlite::Connection) -> Self {
        Self { prepared: Prepared::new(conn, |_| Statements::default()), known_callbacks: None }
    }

    /// Makes this connection remember which issuers have callback settings: for the one connection
    /// that writes them, which must then forget as `KnownCallbacks` says.
    pub(crate) fn remember_callbacks(&mut self) {
        self.known_callbacks = Some(crate::repo::KnownCallbacks::default());
    }

    /// Forgets what it remembers of issuers' callback settings.
    pub(crate) fn forget_callbacks(&mut self) {
        if let Some(known) = &mut self.known_callbacks {
            known.forget();
        }
    }

    /// The connection, for what the repository's surface does not cover (pragmas, checkpoints).
    pub(crate) fn connection(&self) -> &rusqlite::Connection {
        self.prepared.borrow_owner()
    }

    /// The connection, its statements finalised first (to close it).
    pub(crate) fn into_connection(self) -> rusqlite::Connection {
        self.prepared.into_owner()
    }

    /// How many statements this connection keeps prepared.
    #[cfg(test)]
    fn prepared(&mut self) -> usize {
        self.prepared.with_dependent_mut(|_, statements| statements.0.len())
    }
}

/// The statements a connection has prepared, by the address and length of their SQL, which is
/// `'static`: a static string never moves and its address is never reused, so the pair names one
/// text for good.
///
/// Kept here rather than in rusqlite's `prepare_cached`, which for every run hashed the SQL text
/// twice (to take the statement out of its LRU and to put it back), copied the text into a fresh
/// `Arc<str>` as the statement's key and cleared its bindings: about 1,600 instructions per
/// statement, with eight statements per suspend or resume (callgrind, docs/PERFORMANCE.md). Here a
/// run finds its statement by a hash of two words and rebinds every parameter (so no binding of an
/// earlier run is ever read).
#[derive(Default)]
struct Statements<'c>(HashMap<SqlKey, Kept<'c>, foldhash::fast::FixedState>);

/// A prepared statement and its shape.
struct Kept<'c> {
    statement: rusqlite::Statement<'c>,
    shape: Shape,
}

/// A `'static` SQL text by where it is: its address and its length.
type SqlKey = (usize, usize);

fn sql_key(sql: &'static str) -> SqlKey {
    (sql.as_ptr() as usize, sql.len())
}

/// Statements kept at most: the repository's statements are fixed strings, far fewer than this.
const KEPT: usize = 1024;

/// What a statement binds and returns, read from SQLite once, when it is prepared. Reading it at
/// every run cost a call, a `strlen` and a UTF-8 check per parameter and per column and an
/// allocation per column name: about 7% of the writer's time under life-cycle load.
struct Shape {
    /// For each parameter, in SQLite's order, the number `n` of its `$n`: which bound value it takes.
    arguments: Box<[usize]>,
    columns: Arc<[Box<str>]>,
}

impl Shape {
    fn of(statement: &rusqlite::Statement<'_>) -> Result<Self, sqlx::Error> {
        // SQLite numbers parameters by first appearance, so `$2 ... $1` or a repeated `$1` would
        // bind the wrong values if bound by position: bind by the number in each parameter's name.
        let arguments = (1..=statement.parameter_count())
            .map(|index| match statement.parameter_name(index) {
                Some(name) => name[1..]
                    .parse::<usize>()
                    .map_err(|_| sqlx::Error::InvalidArgument(format!("parameter {name} is not of the form $n"))),
                None => Ok(index),
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { arguments, columns: statement.column_names().into_iter().map(Box::from).collect() })
    }
}

/// A statement and its arguments, `$n` meaning the n-th bound value (as with sqlx).
pub(crate) struct Query<'q> {
    sql: &'static str,
    args: Vec<Box<dyn ToSql + Send + 'q>>,
}

pub(crate) fn query<'q>(sql: &'static str) -> Query<'q> {
    Query { sql, args: Vec::new() }
}

/// What an `execute` did.
pub(crate) struct Done {
    rows_affected: u64,
}

impl Done {
    pub(crate) fn rows_affected(&self) -> u64 {
        self.rows_affected
    }
}

impl<'q> Query<'q> {
    pub(crate) fn bind<T: ToSql + Send + 'q>(mut self, value: T) -> Self {
        self.args.push(Box::new(value));
        self
    }

    pub(crate) fn execute(self, conn: &mut NativeConn) -> Ready<Result<Done, sqlx::Error>> {
        ready(self.run(conn, |_| Ok(())).map(|_| Done { rows_affected: conn.connection().changes() }))
    }

    pub(crate) fn fetch_optional(self, conn: &mut NativeConn) -> Ready<Result<Option<NativeRow>, sqlx::Error>> {
        ready(self.run(conn, |row| row.to_owned()).map(|rows| rows.into_iter().next()))
    }

    pub(crate) fn fetch_all(self, conn: &mut NativeConn) -> Ready<Result<Vec<NativeRow>, sqlx::Error>> {
        ready(self.run(conn, |row| row.to_owned()))
    }

    /// Runs the statement to completion, mapping each row as it comes.
    fn run<T>(
        &self,
        conn: &mut NativeConn,
        mut map: impl FnMut(&RowRef<'_>) -> Result<T, sqlx::Error>,
    ) -> Result<Vec<T>, sqlx::Error> {
        conn.prepared.with_dependent_mut(|connection, Statements(kept)| {
            let key = sql_key(self.sql);
            if !kept.contains_key(&key) {
                let statement = connection
                    .prepare_with_flags(self.sql, rusqlite::PrepFlags::SQLITE_PREPARE_PERSISTENT)
                    .map_err(error)?;
                let shape = Shape::of(&statement)?;
                if kept.len() >= KEPT {
                    kept.clear();
                }
                kept.insert(key, Kept { statement, shape });
            }
            let Kept { statement, shape } = kept.get_mut(&key).expect("kept just above");
            for (index, &position) in shape.arguments.iter().enumerate() {
                let value = self
                    .args
                    .get(position.wrapping_sub(1))
                    .ok_or_else(|| sqlx::Error::InvalidArgument(format!("no value bound for parameter ${position}")))?;
                statement.raw_bind_parameter(index + 1, value).map_err(error)?;
            }
            let columns = &shape.columns;
            // Dropping the rows resets the statement, whatever happens below.
            let mut rows = statement.raw_query();
            let mut mapped = Vec::new();
            while let Some(row) = rows.next().map_err(error)? {
                mapped.push(map(&RowRef { columns, row })?);
            }
            Ok(mapped)
        })
    }
}

/// A statement whose rows are read as `O`.
pub(crate) struct QueryAs<'q, O> {
    query: Query<'q>,
    output: PhantomData<fn() -> O>,
}

pub(crate) fn query_as<'q, O: FromRow>(sql: &'static str) -> QueryAs<'q, O> {
    QueryAs { query: query(sql), output: PhantomData }
}

impl<'q, O: FromRow> QueryAs<'q, O> {
    pub(crate) fn bind<T: ToSql + Send + 'q>(self, value: T) -> Self {
        QueryAs { query: self.query.bind(value), output: PhantomData }
    }

    pub(crate) fn fetch_optional(self, conn: &mut NativeConn) -> Ready<Result<Option<O>, sqlx::Error>> {
        ready(self.query.run(conn, O::from_row).map(|rows| rows.into_iter().next()))
    }

    pub(crate) fn fetch_all(self, conn: &mut NativeConn) -> Ready<Result<Vec<O>, sqlx::Error>> {
        ready(self.query.run(conn, O::from_row))
    }
}

/// One row, owned, its columns readable by name or position: what `query` yields, for callers
/// that read columns one by one.
pub(crate) struct NativeRow {
    columns: Arc<[Box<str>]>,
    values: Vec<Value>,
}

/// The row a statement stands on, read in place: what `query_as` decodes its types from, each
/// column copied once, straight into the field it becomes (a `NativeRow` copies every column into
/// a `Value` first, and a field from there).
pub(crate) struct RowRef<'r> {
    columns: &'r Arc<[Box<str>]>,
    row: &'r rusqlite::Row<'r>,
}

impl RowRef<'_> {
    fn to_owned(&self) -> Result<NativeRow, sqlx::Error> {
        let values = (0..self.columns.len()).map(|i| self.row.get_ref(i).map(Value::from)).collect::<Result<_, _>>();
        Ok(NativeRow { columns: Arc::clone(self.columns), values: values.map_err(error)? })
    }
}

/// A column named or numbered, as sqlx's `ColumnIndex`.
pub(crate) trait ColumnIndex: Copy {
    /// Its place among `columns`.
    fn position(self, columns: &[Box<str>]) -> Result<usize, sqlx::Error>;
}

impl ColumnIndex for &str {
    fn position(self, columns: &[Box<str>]) -> Result<usize, sqlx::Error> {
        columns.iter().position(|c| &**c == self).ok_or_else(|| sqlx::Error::ColumnNotFound(self.to_owned()))
    }
}

impl ColumnIndex for usize {
    fn position(self, columns: &[Box<str>]) -> Result<usize, sqlx::Error> {
        if self < columns.len() {
            Ok(self)
        } else {
            Err(sqlx::Error::ColumnIndexOutOfBounds { index: self, len: columns.len() })
        }
    }
}

/// Reading a column, under the name the repository uses with sqlx (`use $sql::Row`).
pub(crate) trait Row {
    fn try_get<T: FromSql, I: ColumnIndex>(&self, index: I) -> Result<T, sqlx::Error>;
}

fn decode<T: FromSql>(columns: &[Box<str>], position: usize, value: ValueRef<'_>) -> Result<T, sqlx::Error> {
    T::column_result(value)
        .map_err(|source| sqlx::Error::ColumnDecode { index: columns[position].to_string(), source: Box::new(source) })
}

impl Row for NativeRow {
    fn try_get<T: FromSql, I: ColumnIndex>(&self, index: I) -> Result<T, sqlx::Error> {
        let position = index.position(&self.columns)?;
        decode(&self.columns, position, ValueRef::from(&self.values[position]))
    }
}

impl Row for RowRef<'_> {
    fn try_get<T: FromSql, I: ColumnIndex>(&self, index: I) -> Result<T, sqlx::Error> {
        let position = index.position(self.columns)?;
        decode(self.columns, position, self.row.get_ref(position).map_err(error)?)
    }
}

/// A row read into a type: tuples by position, the repository's row structs by column name.
pub(crate) trait FromRow: Sized {
    fn from_row(row: &RowRef<'_>) -> Result<Self, sqlx::Error>;
}

macro_rules! tuple_from_row {
    ($($t:ident $i:tt),+) => {
        impl<$($t: FromSql),+> FromRow for ($($t,)+) {
            fn from_row(row: &RowRef<'_>) -> Result<Self, sqlx::Error> {
                Ok(($(row.try_get::<$t, usize>($i)?,)+))
            }
        }
    };
}

tuple_from_row!(A 0);
tuple_from_row!(A 0, B 1);
tuple_from_row!(A 0, B 1, C 2);
tuple_from_row!(A 0, B 1, C 2, D 3);
tuple_from_row!(A 0, B 1, C 2, D 3, E 4);
tuple_from_row!(A 0, B 1, C 2, D 3, E 4, F 5);
tuple_from_row!(A 0, B 1, C 2, D 3, E 4, F 5, G 6);
tuple_from_row!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7);
tuple_from_row!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8);

/// `FromRow` for a struct that derives `sqlx::FromRow`, reading the same columns by name.
macro_rules! struct_from_row {
    ($row:ty { $($field:ident),+ $(,)? }) => {
        impl $crate::native::FromRow for $row {
            fn from_row(row: &$crate::native::RowRef<'_>) -> Result<Self, sqlx::Error> {
                use $crate::native::Row as _;
                Ok(Self { $($field: row.try_get(stringify!($field))?),+ })
            }
        }
    };
}
pub(crate) use struct_from_row;

/// A SQLite error as sqlx reports one, so that callers see one kind of error whichever way the
/// statement ran. Constraint failures keep SQLite's message ("UNIQUE constraint failed: t.c").
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub(crate) struct SqliteFailure {
    code: rusqlite::ffi::Error,
    message: String,
}

pub(crate) fn error(error: rusqlite::Error) -> sqlx::Error {
    match error {
        rusqlite::Error::SqliteFailure(code, message) => sqlx::Error::Database(Box::new(SqliteFailure {
            message: message.unwrap_or_else(|| code.to_string()),
            code,
        })),
        other => sqlx::Error::AnyDriverError(Box::new(other)),
    }
}

impl sqlx::error::DatabaseError for SqliteFailure {
    fn message(&self) -> &str {
        &self.message
    }

    fn code(&self) -> Option<Cow<'_, str>> {
        Some(Cow::Owned(self.code.extended_code.to_string()))
    }

    fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        self
    }

    fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
        self
    }

    fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
        self
    }

    fn kind(&self) -> sqlx::error::ErrorKind {
        use rusqlite::ffi;
        use sqlx::error::ErrorKind;
        match self.code.extended_code {
            ffi::SQLITE_CONSTRAINT_UNIQUE | ffi::SQLITE_CONSTRAINT_PRIMARYKEY => ErrorKind::UniqueViolation,
            ffi::SQLITE_CONSTRAINT_FOREIGNKEY => ErrorKind::ForeignKeyViolation,
            ffi::SQLITE_CONSTRAINT_NOTNULL => ErrorKind::NotNullViolation,
            ffi::SQLITE_CONSTRAINT_CHECK => ErrorKind::CheckViolation,
            _ => ErrorKind::Other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn() -> NativeConn {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (k TEXT PRIMARY KEY, n INTEGER NOT NULL, b BLOB)").unwrap();
        NativeConn::new(conn)
    }

    #[tokio::test]
    async fn parameters_bind_by_their_number_not_their_place() {
        let mut conn = conn();
        let done =
            query("INSERT INTO t (n, k) VALUES ($2, $1)").bind("a").bind(7_i64).execute(&mut conn).await.unwrap();
        assert_eq!(done.rows_affected(), 1);
        // `$1` twice and `$2` before it: SQLite alone would number them 1 and 2 in that order.
        let row: Option<(String, i64)> = query_as("SELECT k, n FROM t WHERE n = $2 AND (k = $1 OR $1 IS NULL)")
            .bind("a")
            .bind(7_i64)
            .fetch_optional(&mut conn)
            .await
            .unwrap();
        assert_eq!(row, Some(("a".to_owned(), 7)));
    }

    /// The second run of a statement binds and reads by the shape the first one kept.
    #[tokio::test]
    async fn a_statement_run_again_binds_and_reads_the_same_way() {
        let mut conn = conn();
        let insert = "INSERT INTO t (n, k) VALUES ($2, $1)";
        for (k, n) in [("a", 1_i64), ("b", 2), ("c", 3)] {
            query(insert).bind(k).bind(n).execute(&mut conn).await.unwrap();
        }
        let select = "SELECT n, k FROM t WHERE n >= $2 AND k <> $1 ORDER BY n";
        for (skip, from, expected) in [("a", 1_i64, vec!["b", "c"]), ("c", 2, vec!["b"]), ("z", 1, vec!["a", "b", "c"])]
        {
            let rows = query(select).bind(skip).bind(from).fetch_all(&mut conn).await.unwrap();
            let keys: Vec<String> = rows.iter().map(|row| row.try_get("k").unwrap()).collect();
            assert_eq!(keys, expected, "skipping {skip} from {from}");
        }
        assert_eq!(conn.prepared(), 2, "one prepared statement per SQL text");
    }

    #[tokio::test]
    async fn rows_read_by_name_and_missing_values_are_refused() {
        let mut conn = conn();
        query("INSERT INTO t (k, n, b) VALUES ($1, $2, $3)")
            .bind("a")
            .bind(1_i64)
            .bind(None::<Vec<u8>>)
            .execute(&mut conn)
            .await
            .unwrap();
        let rows = query("SELECT * FROM t").fetch_all(&mut conn).await.unwrap();
        assert_eq!(rows[0].try_get::<i64, _>("n").unwrap(), 1);
        assert_eq!(rows[0].try_get::<Option<Vec<u8>>, _>("b").unwrap(), None);
        assert!(matches!(rows[0].try_get::<i64, _>("nope"), Err(sqlx::Error::ColumnNotFound(_))));
        assert!(matches!(rows[0].try_get::<i64, _>("k"), Err(sqlx::Error::ColumnDecode { .. })));
        let unbound = query("SELECT k FROM t WHERE k = $2").bind("a").fetch_all(&mut conn).await;
        assert!(matches!(unbound, Err(sqlx::Error::InvalidArgument(_))));
    }

    #[tokio::test]
    async fn a_broken_uniqueness_rule_reads_as_sqlx_reports_it() {
        let mut conn = conn();
        let insert = |conn: &mut NativeConn| query("INSERT INTO t (k, n) VALUES ('a', 1)").execute(conn);
        insert(&mut conn).await.unwrap();
        let error = insert(&mut conn).await.err().unwrap();
        let database = error.as_database_error().expect("a database error");
        assert!(database.is_unique_violation());
        assert_eq!(database.message(), "UNIQUE constraint failed: t.k");
    }
}

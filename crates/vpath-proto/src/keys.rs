//! Attribute keys used in [`crate::Label::attrs`].
//!
//! The OpenTelemetry semantic-convention keys come first; the others are
//! `vpath.<protocol>.<field>`, for what the conventions do not name.

// OpenTelemetry semantic conventions.
pub const DB_NAMESPACE: &str = "db.namespace";
pub const DB_OPERATION_NAME: &str = "db.operation.name";
pub const DB_QUERY_TEXT: &str = "db.query.text";
pub const DB_RESPONSE_RETURNED_ROWS: &str = "db.response.returned_rows";
pub const DB_RESPONSE_STATUS_CODE: &str = "db.response.status_code";
pub const DB_SYSTEM_NAME: &str = "db.system.name";
pub const ERROR_TYPE: &str = "error.type";
pub const HTTP_REQUEST_METHOD: &str = "http.request.method";
pub const HTTP_REQUEST_METHOD_ORIGINAL: &str = "http.request.method_original";
pub const HTTP_RESPONSE_STATUS_CODE: &str = "http.response.status_code";
pub const NETWORK_PROTOCOL_NAME: &str = "network.protocol.name";
pub const NETWORK_PROTOCOL_VERSION: &str = "network.protocol.version";
pub const URL_PATH: &str = "url.path";
pub const URL_QUERY: &str = "url.query";

// HTTP.
/// The whole request target, e.g. `/index.php?title=Page_7` (query values redacted by default).
pub const HTTP_TARGET: &str = "http.target";

// FastCGI.
pub const FASTCGI_APP_STATUS: &str = "vpath.fastcgi.app_status";
pub const FASTCGI_PROTOCOL_STATUS: &str = "vpath.fastcgi.protocol_status";
pub const FASTCGI_REQUEST_ID: &str = "vpath.fastcgi.request_id";
pub const FASTCGI_REQUEST_URI: &str = "vpath.fastcgi.request_uri";
pub const FASTCGI_ROLE: &str = "vpath.fastcgi.role";
pub const FASTCGI_SCRIPT_FILENAME: &str = "vpath.fastcgi.script_filename";
pub const FASTCGI_STDERR: &str = "vpath.fastcgi.stderr";

// MySQL.
pub const MYSQL_AFFECTED_ROWS: &str = "vpath.mysql.affected_rows";
pub const MYSQL_AUTH_PLUGIN: &str = "vpath.mysql.auth_plugin";
pub const MYSQL_COLUMN_COUNT: &str = "vpath.mysql.column_count";
pub const MYSQL_COMMAND: &str = "vpath.mysql.command";
pub const MYSQL_CONNECTION_ID: &str = "vpath.mysql.connection_id";
pub const MYSQL_ERROR_MESSAGE: &str = "vpath.mysql.error_message";
pub const MYSQL_SERVER_VERSION: &str = "vpath.mysql.server_version";
pub const MYSQL_SQLSTATE: &str = "vpath.mysql.sqlstate";
pub const MYSQL_STATEMENT_ID: &str = "vpath.mysql.statement_id";
pub const MYSQL_USER: &str = "vpath.mysql.user";

// PostgreSQL.
pub const PG_APPLICATION_NAME: &str = "vpath.postgresql.application_name";
pub const PG_AUTH: &str = "vpath.postgresql.auth";
pub const PG_COLUMN_COUNT: &str = "vpath.postgresql.column_count";
pub const PG_COMMAND_TAG: &str = "vpath.postgresql.command_tag";
pub const PG_ERROR_MESSAGE: &str = "vpath.postgresql.error_message";
pub const PG_MESSAGE: &str = "vpath.postgresql.message";
pub const PG_PORTAL: &str = "vpath.postgresql.portal";
pub const PG_SEVERITY: &str = "vpath.postgresql.severity";
pub const PG_SSL: &str = "vpath.postgresql.ssl";
pub const PG_STATEMENT: &str = "vpath.postgresql.statement";
pub const PG_TRANSACTION_STATUS: &str = "vpath.postgresql.transaction_status";
pub const PG_USER: &str = "vpath.postgresql.user";

// memcached.
pub const MEMCACHED_BYTES: &str = "vpath.memcached.bytes";
pub const MEMCACHED_ERROR_MESSAGE: &str = "vpath.memcached.error_message";
pub const MEMCACHED_KEY: &str = "vpath.memcached.key";
pub const MEMCACHED_NOREPLY: &str = "vpath.memcached.noreply";
pub const MEMCACHED_STATUS: &str = "vpath.memcached.status";
pub const MEMCACHED_VERSION: &str = "vpath.memcached.version";

// Redis.
pub const REDIS_COUNT: &str = "vpath.redis.count";
pub const REDIS_ERROR_MESSAGE: &str = "vpath.redis.error_message";
pub const REDIS_KEY: &str = "vpath.redis.key";

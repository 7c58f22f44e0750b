//! The Tomcat checker on real output: four paths of a `vpath record --payload-bytes 4096` run of
//! `stacks/tomcat/stack.sh load 40 8` (TC_JDBC=direct), as `vpath analyze --format jsonl` wrote them (two item
//! views, Item_88 and Item_63, and the two paths vpath made of Connector/J's pipelined
//! `SELECT @@max_allowed_packet...`, marked incomplete with `caller-missing`), and MariaDB's general log lines of
//! those two connections in that run. Then the same data made wrong, which the checker must catch.

use serde_json::Value;
use vpath_stacks::tomcat::{check, Config, Report};
use vpath_stacks::{genlog, read_paths};

const PATHS: &str = r#"{"path":1,"complete":true,"root":{"kind":"origin","host":"vm","pid":32447,"tid":32447,"comm":"ab","process":"ab","netns":4026531833,"local":"127.0.0.1:41174","remote":"127.0.0.1:8081","start_ns":12360915396610,"end_ns":12360933966278,"bytes_in":372,"bytes_out":96,"protocol":"http","name":"GET /item.jsp","attrs":{"http.request.method":"GET","http.response.status_code":"200","http.target":"/item.jsp?id=88","network.protocol.name":"http","network.protocol.version":"1.1","url.path":"/item.jsp","url.query":"id=88"},"children":[{"kind":"server","host":"vm","pid":23050,"tid":23352,"comm":"http-nio-127.0.","netns":4026531833,"local":"127.0.0.1:8081","remote":"127.0.0.1:41174","start_ns":12360915580390,"end_ns":12360919562876,"bytes_in":96,"bytes_out":372,"protocol":"http","name":"GET /item.jsp","attrs":{"http.request.method":"GET","http.response.status_code":"200","http.target":"/item.jsp?id=88","network.protocol.name":"http","network.protocol.version":"1.1","url.path":"/item.jsp","url.query":"id=88"},"children":[{"kind":"server","host":"vm","pid":23026,"tid":31508,"comm":"mariadbd","process":"mariadbd","netns":4026531833,"local":"127.0.0.1:3307","remote":"127.0.0.1:51440","start_ns":12360916155598,"end_ns":12360916201569,"bytes_in":242,"bytes_out":20,"protocol":"mysql","name":"Login","attrs":{"db.namespace":"shop","db.system.name":"mysql","network.protocol.name":"mysql","vpath.mysql.affected_rows":"0","vpath.mysql.user":"shop"},"children":[]},{"kind":"server","host":"vm","pid":23026,"tid":31508,"comm":"mariadbd","process":"mariadbd","netns":4026531833,"local":"127.0.0.1:3307","remote":"127.0.0.1:51440","start_ns":12360916233191,"end_ns":12360916323982,"bytes_in":75,"bytes_out":29,"protocol":"mysql","name":"SET","attrs":{"db.operation.name":"SET","db.query.text":"set autocommit=1, sql_mode = concat(@@sql_mode,',STRICT_TRANS_TABLES')","db.system.name":"mysql","network.protocol.name":"mysql","vpath.mysql.affected_rows":"0","vpath.mysql.command":"COM_QUERY"},"children":[]},{"kind":"server","host":"vm","pid":23026,"tid":31508,"comm":"mariadbd","process":"mariadbd","netns":4026531833,"local":"127.0.0.1:3307","remote":"127.0.0.1:51440","start_ns":12360916423194,"end_ns":12360916587675,"bytes_in":67,"bytes_out":223,"protocol":"mysql","name":"SELECT","attrs":{"db.operation.name":"SELECT","db.query.text":"SELECT id, name, price, views FROM item WHERE name = 'Item_88'","db.system.name":"mysql","network.protocol.name":"mysql","vpath.mysql.column_count":"4","vpath.mysql.command":"COM_QUERY"},"children":[]},{"kind":"server","host":"vm","pid":23026,"tid":31508,"comm":"mariadbd","process":"mariadbd","netns":4026531833,"local":"127.0.0.1:3307","remote":"127.0.0.1:51440","start_ns":12360916614776,"end_ns":12360916714787,"bytes_in":79,"bytes_out":233,"protocol":"mysql","name":"SELECT","attrs":{"db.operation.name":"SELECT","db.query.text":"SELECT id, stars, body FROM review WHERE item_name = 'Item_88' ORDER BY id","db.system.name":"mysql","network.protocol.name":"mysql","vpath.mysql.column_count":"3","vpath.mysql.command":"COM_QUERY"},"children":[]},{"kind":"server","host":"vm","pid":23026,"tid":31508,"comm":"mariadbd","process":"mariadbd","netns":4026531833,"local":"127.0.0.1:3307","remote":"127.0.0.1:51440","start_ns":12360916747787,"end_ns":12360918797776,"bytes_in":61,"bytes_out":52,"protocol":"mysql","name":"UPDATE","attrs":{"db.operation.name":"UPDATE","db.query.text":"UPDATE item SET views = views + 1 WHERE name = 'Item_88'","db.system.name":"mysql","network.protocol.name":"mysql","vpath.mysql.affected_rows":"1","vpath.mysql.command":"COM_QUERY"},"children":[]},{"kind":"server","host":"vm","pid":23026,"tid":31508,"comm":"mariadbd","process":"mariadbd","netns":4026531833,"local":"127.0.0.1:3307","remote":"127.0.0.1:51440","start_ns":12360918919711,"end_ns":12360918919711,"bytes_in":5,"bytes_out":0,"protocol":"mysql","name":"QUIT","attrs":{"db.system.name":"mysql","network.protocol.name":"mysql","vpath.mysql.command":"COM_QUIT"},"children":[]}]}]}}
{"path":2,"complete":true,"root":{"kind":"origin","host":"vm","pid":32445,"tid":32445,"comm":"ab","process":"ab","netns":4026531833,"local":"127.0.0.1:45698","remote":"127.0.0.1:8081","start_ns":12360918500054,"end_ns":12360921119709,"bytes_in":329,"bytes_out":96,"protocol":"http","name":"GET /item.jsp","attrs":{"http.request.method":"GET","http.response.status_code":"200","http.target":"/item.jsp?id=63","network.protocol.name":"http","network.protocol.version":"1.1","url.path":"/item.jsp","url.query":"id=63"},"children":[{"kind":"server","host":"vm","pid":23050,"tid":30044,"comm":"http-nio-127.0.","netns":4026531833,"local":"127.0.0.1:8081","remote":"127.0.0.1:45698","start_ns":12360918567169,"end_ns":12360921109980,"bytes_in":96,"bytes_out":329,"protocol":"http","name":"GET /item.jsp","attrs":{"http.request.method":"GET","http.response.status_code":"200","http.target":"/item.jsp?id=63","network.protocol.name":"http","network.protocol.version":"1.1","url.path":"/item.jsp","url.query":"id=63"},"children":[{"kind":"server","host":"vm","pid":23026,"tid":31271,"comm":"mariadbd","process":"mariadbd","netns":4026531833,"local":"127.0.0.1:3307","remote":"127.0.0.1:51442","start_ns":12360919641831,"end_ns":12360919676832,"bytes_in":242,"bytes_out":20,"protocol":"mysql","name":"Login","attrs":{"db.namespace":"shop","db.system.name":"mysql","network.protocol.name":"mysql","vpath.mysql.affected_rows":"0","vpath.mysql.user":"shop"},"children":[]},{"kind":"server","host":"vm","pid":23026,"tid":31271,"comm":"mariadbd","process":"mariadbd","netns":4026531833,"local":"127.0.0.1:3307","remote":"127.0.0.1:51442","start_ns":12360919728396,"end_ns":12360919799851,"bytes_in":75,"bytes_out":29,"protocol":"mysql","name":"SET","attrs":{"db.operation.name":"SET","db.query.text":"set autocommit=1, sql_mode = concat(@@sql_mode,',STRICT_TRANS_TABLES')","db.system.name":"mysql","network.protocol.name":"mysql","vpath.mysql.affected_rows":"0","vpath.mysql.command":"COM_QUERY"},"children":[]},{"kind":"server","host":"vm","pid":23026,"tid":31271,"comm":"mariadbd","process":"mariadbd","netns":4026531833,"local":"127.0.0.1:3307","remote":"127.0.0.1:51442","start_ns":12360919873235,"end_ns":12360919962178,"bytes_in":67,"bytes_out":223,"protocol":"mysql","name":"SELECT","attrs":{"db.operation.name":"SELECT","db.query.text":"SELECT id, name, price, views FROM item WHERE name = 'Item_63'","db.system.name":"mysql","network.protocol.name":"mysql","vpath.mysql.column_count":"4","vpath.mysql.command":"COM_QUERY"},"children":[]},{"kind":"server","host":"vm","pid":23026,"tid":31271,"comm":"mariadbd","process":"mariadbd","netns":4026531833,"local":"127.0.0.1:3307","remote":"127.0.0.1:51442","start_ns":12360919981370,"end_ns":12360920135943,"bytes_in":79,"bytes_out":198,"protocol":"mysql","name":"SELECT","attrs":{"db.operation.name":"SELECT","db.query.text":"SELECT id, stars, body FROM review WHERE item_name = 'Item_63' ORDER BY id","db.system.name":"mysql","network.protocol.name":"mysql","vpath.mysql.column_count":"3","vpath.mysql.command":"COM_QUERY"},"children":[]},{"kind":"server","host":"vm","pid":23026,"tid":31271,"comm":"mariadbd","process":"mariadbd","netns":4026531833,"local":"127.0.0.1:3307","remote":"127.0.0.1:51442","start_ns":12360920166646,"end_ns":12360920952515,"bytes_in":61,"bytes_out":52,"protocol":"mysql","name":"UPDATE","attrs":{"db.operation.name":"UPDATE","db.query.text":"UPDATE item SET views = views + 1 WHERE name = 'Item_63'","db.system.name":"mysql","network.protocol.name":"mysql","vpath.mysql.affected_rows":"1","vpath.mysql.command":"COM_QUERY"},"children":[]},{"kind":"server","host":"vm","pid":23026,"tid":31271,"comm":"mariadbd","process":"mariadbd","netns":4026531833,"local":"127.0.0.1:3307","remote":"127.0.0.1:51442","start_ns":12360921046914,"end_ns":12360921046914,"bytes_in":5,"bytes_out":0,"protocol":"mysql","name":"QUIT","attrs":{"db.system.name":"mysql","network.protocol.name":"mysql","vpath.mysql.command":"COM_QUIT"},"children":[]}]}]}}
{"path":41,"complete":false,"root":{"kind":"server","host":"vm","pid":23026,"tid":31508,"comm":"mariadbd","process":"mariadbd","netns":4026531833,"local":"127.0.0.1:3307","remote":"127.0.0.1:51440","start_ns":12360916327078,"end_ns":12360916378757,"bytes_in":90,"bytes_out":221,"protocol":"mysql","name":"SELECT","attrs":{"db.operation.name":"SELECT","db.query.text":"SELECT @@max_allowed_packet,@@system_time_zone,@@time_zone,@@auto_increment_increment","db.system.name":"mysql","network.protocol.name":"mysql","vpath.mysql.column_count":"4","vpath.mysql.command":"COM_QUERY"},"issues":["caller-missing"],"children":[]}}
{"path":42,"complete":false,"root":{"kind":"server","host":"vm","pid":23026,"tid":31271,"comm":"mariadbd","process":"mariadbd","netns":4026531833,"local":"127.0.0.1:3307","remote":"127.0.0.1:51442","start_ns":12360919812256,"end_ns":12360919848970,"bytes_in":90,"bytes_out":221,"protocol":"mysql","name":"SELECT","attrs":{"db.operation.name":"SELECT","db.query.text":"SELECT @@max_allowed_packet,@@system_time_zone,@@time_zone,@@auto_increment_increment","db.system.name":"mysql","network.protocol.name":"mysql","vpath.mysql.column_count":"4","vpath.mysql.command":"COM_QUERY"},"issues":["caller-missing"],"children":[]}}"#;

const LOG: &str = "/usr/sbin/mariadbd, Version: 10.11.19-MariaDB-0+deb12u1-log (Debian 12). started with:\n\
Tcp port: 3307  Unix socket: /tmp/vpath-stacks/tomcat/mysql/mysqld.sock\n\
Time\t\t    Id Command\tArgument\n\
\t\t 83112 Query\tSELECT 'vpath-load-begin'\n\
\t\t 83113 Connect\tshop@127.0.0.1 on shop using TCP/IP\n\
\t\t 83113 Query\tset autocommit=1, sql_mode = concat(@@sql_mode,',STRICT_TRANS_TABLES')\n\
\t\t 83113 Query\tSELECT @@max_allowed_packet,@@system_time_zone,@@time_zone,@@auto_increment_increment\n\
\t\t 83113 Query\tSELECT id, name, price, views FROM item WHERE name = 'Item_88'\n\
\t\t 83113 Query\tSELECT id, stars, body FROM review WHERE item_name = 'Item_88' ORDER BY id\n\
\t\t 83113 Query\tUPDATE item SET views = views + 1 WHERE name = 'Item_88'\n\
\t\t 83113 Quit\t\n\
\t\t 83114 Connect\tshop@127.0.0.1 on shop using TCP/IP\n\
\t\t 83114 Query\tset autocommit=1, sql_mode = concat(@@sql_mode,',STRICT_TRANS_TABLES')\n\
\t\t 83114 Query\tSELECT @@max_allowed_packet,@@system_time_zone,@@time_zone,@@auto_increment_increment\n\
\t\t 83114 Query\tSELECT id, name, price, views FROM item WHERE name = 'Item_63'\n\
\t\t 83114 Query\tSELECT id, stars, body FROM review WHERE item_name = 'Item_63' ORDER BY id\n\
\t\t 83114 Query\tUPDATE item SET views = views + 1 WHERE name = 'Item_63'\n\
\t\t 83114 Quit\t\n\
\t\t 83153 Query\tSELECT 'vpath-load-end'\n\
";

fn judge(paths: &[Value]) -> Report {
    let text: String = paths.iter().map(|p| format!("{p}\n")).collect();
    let paths = read_paths(text.as_bytes()).unwrap();
    let entries = genlog::parse(LOG);
    let w = genlog::window(&entries, "vpath-load-begin", "vpath-load-end");
    check(&paths, w, Some(2), &Config::default())
}

fn real() -> Vec<Value> {
    PATHS
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Every `db.query.text` in a path, as mutable references, depth first.
fn texts(v: &mut Value) -> Vec<&mut Value> {
    fn go<'a>(s: &'a mut Value, out: &mut Vec<&'a mut Value>) {
        let Value::Object(m) = s else { return };
        let mut kids = None;
        for (k, v) in m.iter_mut() {
            match k.as_str() {
                "attrs" => {
                    if let Some(t) = v.get_mut("db.query.text") {
                        out.push(t);
                    }
                }
                "children" => kids = Some(v),
                _ => {}
            }
        }
        if let Some(Value::Array(cs)) = kids {
            for c in cs {
                go(c, out);
            }
        }
    }
    let mut out = Vec::new();
    go(&mut v["root"], &mut out);
    out
}

#[test]
fn the_real_run_is_exact() {
    let r = judge(&real());
    assert_eq!(
        (r.paths, r.item_paths, r.exact, r.background_paths),
        (4, 2, 2, 2),
        "{r:#?}"
    );
    assert_eq!((r.log_item_queries, r.path_item_queries), (6, 6));
    assert_eq!(r.issues.get("caller-missing"), Some(&2));
    assert!(r.all_exact(), "{r:#?}");
    // Connector/J pipelines its two set-up statements: vpath links the first and leaves the second in a path of
    // its own (incomplete, caller-missing), while the item path is marked complete without it
    assert_eq!(
        (
            r.unnamed_missing_paths,
            r.unnamed_missing_queries,
            r.complete_but_lacking
        ),
        (2, 2, 2),
        "{r:#?}"
    );
    assert!(r
        .findings
        .iter()
        .all(|f| f.kind == "unnamed-missing" && f.detail.contains("SELECT @@max_allowed_packet")));
}

#[test]
fn swapping_two_real_statements_is_caught() {
    let mut p = real();
    let (a, b) = p.split_at_mut(1);
    let mut ta = texts(&mut a[0]);
    let mut tb = texts(&mut b[0]);
    let ia = ta
        .iter()
        .position(|t| t.as_str().unwrap().starts_with("UPDATE"))
        .unwrap();
    let ib = tb
        .iter()
        .position(|t| t.as_str().unwrap().starts_with("UPDATE"))
        .unwrap();
    std::mem::swap(ta[ia], tb[ib]);
    let r = judge(&p);
    assert_eq!(r.wrong_stitch_paths, 2, "{r:#?}");
    assert_eq!(r.missing_queries, 2);
    assert!(!r.all_exact());
}

#[test]
fn dropping_a_real_statement_is_caught() {
    let mut p = real();
    let mut t = texts(&mut p[1]);
    let i = t
        .iter()
        .position(|t| t.as_str().unwrap().contains("FROM review"))
        .unwrap();
    *t[i] = Value::String("SELECT 1".into());
    let r = judge(&p);
    assert_eq!(
        (r.missing_queries, r.count_mismatch_paths, r.exact),
        (1, 1, 1),
        "{r:#?}"
    );
    assert!(!r.all_exact());
}

#[test]
fn duplicating_a_real_statement_is_caught() {
    let mut p = real();
    let mut t = texts(&mut p[0]);
    let i = t
        .iter()
        .position(|t| t.as_str().unwrap().starts_with("set autocommit"))
        .unwrap();
    let j = t
        .iter()
        .position(|t| t.as_str().unwrap().contains("FROM review"))
        .unwrap();
    let dup = t[j].clone();
    *t[i] = dup;
    let r = judge(&p);
    assert_eq!(
        (r.surplus_queries, r.count_mismatch_paths, r.exact),
        (1, 1, 1),
        "{r:#?}"
    );
    assert!(!r.all_exact());
}

//! "By service" in a fleet report: the hosts' domains and host names of each app summed by name
//! (traffic added, name sources, countries and ASNs united), shares recomputed from the sums.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::{array, payload, pct, u};

const SUMMED: [&str; 3] = ["payload_tx", "payload_rx", "flows"];

fn add(into: &mut Value, from: &Value) {
    for f in SUMMED {
        into[f] = json!(u(&into[f]) + u(&from[f]));
    }
}

/// Sorted union of two lists (by their JSON text: deterministic).
fn union(a: &Value, b: &Value) -> Value {
    let mut all: BTreeMap<String, Value> = BTreeMap::new();
    for v in array(a).into_iter().chain(array(b)) {
        all.insert(v.to_string(), v);
    }
    json!(all.into_values().collect::<Vec<_>>())
}

fn merge_names(into: &mut Vec<Value>, from: &[Value]) {
    for s in from {
        match into.iter_mut().find(|x| x["name"] == s["name"]) {
            Some(x) => {
                add(&mut x["traffic"], &s["traffic"]);
                for list in ["sources", "countries", "asns"] {
                    x[list] = union(&x[list], &s[list]);
                }
            }
            None => into.push(s.clone()),
        }
    }
}

/// Adds one host's `services` to `into`.
pub(super) fn merge(into: &mut Vec<Value>, from: &[Value]) {
    for s in from {
        let Some(x) = into.iter_mut().find(|x| x["app"] == s["app"]) else {
            into.push(s.clone());
            continue;
        };
        add(&mut x["named"], &s["named"]);
        add(&mut x["unnamed"], &s["unnamed"]);
        for list in ["domains", "hostnames"] {
            let mut names = array(&x[list]);
            merge_names(&mut names, &array(&s[list]));
            x[list] = json!(names);
        }
    }
}

/// Shares of the summed services, in the order of the (merged, sorted) `apps`.
pub(super) fn recompute(services: &mut [Value], apps: &[Value]) {
    let whole = |app: &Value| apps.iter().find(|a| a["app"] == *app).map_or(0, |a| payload(&a["traffic"]));
    for s in services.iter_mut() {
        let all = whole(&s["app"]);
        s["unnamed_share_pct"] = json!(pct(payload(&s["unnamed"]), all));
        for list in ["domains", "hostnames"] {
            let mut names = array(&s[list]);
            for n in &mut names {
                n["share_pct"] = json!(pct(payload(&n["traffic"]), all));
            }
            names.sort_by(|a, b| {
                payload(&b["traffic"])
                    .cmp(&payload(&a["traffic"]))
                    .then_with(|| a["name"].to_string().cmp(&b["name"].to_string()))
            });
            s[list] = json!(names);
        }
    }
    let position = |s: &Value| apps.iter().position(|a| a["app"] == s["app"]).unwrap_or(usize::MAX);
    services.sort_by_key(position);
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn service(name: &str, tx: u64, countries: &[&str]) -> Value {
        json!({"name": name, "registrable_domain": null, "sources": ["sni"],
               "traffic": {"payload_tx": tx, "payload_rx": 0, "flows": 1}, "share_pct": 100.0,
               "countries": countries, "asns": []})
    }

    fn app_services(app: &str, named: u64, unnamed: u64, hosts: Vec<Value>) -> Value {
        json!({"app": app, "named": {"payload_tx": named, "payload_rx": 0, "flows": 1},
               "unnamed": {"payload_tx": unnamed, "payload_rx": 0, "flows": 1}, "unnamed_share_pct": 0.0,
               "domains": hosts.clone(), "hostnames": hosts})
    }

    #[test]
    fn services_of_two_hosts_sum_by_name_with_shares_of_the_summed_app() {
        let mut into = vec![app_services("b", 300, 100, vec![service("a.example", 300, &["SE"])])];
        let from = [
            app_services("b", 100, 0, vec![service("a.example", 60, &["DE"]), service("z.example", 40, &["SE"])]),
            app_services("c", 5, 0, vec![service("c.example", 5, &[])]),
        ];
        merge(&mut into, &from);
        let apps =
            [json!({"app": "c", "traffic": {"payload_tx": 5}}), json!({"app": "b", "traffic": {"payload_tx": 500}})];
        recompute(&mut into, &apps);
        assert_eq!(into[0]["app"], "c", "in the order of the apps");
        let b = &into[1];
        assert_eq!(b["named"]["payload_tx"], 400);
        assert_eq!(b["unnamed"]["payload_tx"], 100);
        assert_eq!(b["unnamed_share_pct"], 20.0);
        let a = &b["hostnames"][0];
        assert_eq!((a["name"].as_str(), a["traffic"]["payload_tx"].as_u64()), (Some("a.example"), Some(360)));
        assert_eq!(a["traffic"]["flows"], 2);
        assert_eq!(a["share_pct"], 72.0);
        assert_eq!(a["countries"], json!(["DE", "SE"]));
        assert_eq!(b["hostnames"][1]["name"], "z.example");
        assert_eq!(b["domains"], b["hostnames"]);
    }
}

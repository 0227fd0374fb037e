//! docker's leftovers in the `nat` table: the seed flushes the table; kubejoin removes
//! exactly docker's chains and the rules that jump to them or masquerade for docker0,
//! with the host's own `iptables` (legacy or nft, whichever it is). The arguments come
//! from pure functions over `iptables -t nat -S`.

/// Words of an `iptables -S` line, double quotes honoured.
fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut any = false;
    for c in line.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                any = true;
            }
            c if c.is_whitespace() && !quoted => {
                if any {
                    out.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            c => {
                cur.push(c);
                any = true;
            }
        }
    }
    if any {
        out.push(cur);
    }
    out
}

fn is_docker_chain(name: &str) -> bool {
    name == "DOCKER" || name.starts_with("DOCKER-")
}

/// The `iptables` argument lists that remove docker's nat rules and chains, in order.
pub fn docker_nat_cleanup(rules: &str) -> Vec<Vec<String>> {
    let mut deletes = Vec::new();
    let mut chains = Vec::new();
    for line in rules.lines() {
        let w = words(line);
        match w.first().map(String::as_str) {
            Some("-N") if w.get(1).is_some_and(|c| is_docker_chain(c)) => chains.push(w[1].clone()),
            Some("-A") if w.len() > 1 && !is_docker_chain(&w[1]) => {
                let jumps = w.windows(2).any(|p| p[0] == "-j" && is_docker_chain(&p[1]));
                let masq = w.iter().any(|x| x == "docker0")
                    && w.windows(2).any(|p| p[0] == "-j" && p[1] == "MASQUERADE");
                if jumps || masq {
                    let mut args = vec!["-t".to_string(), "nat".into(), "-D".into()];
                    args.extend(w[1..].iter().cloned());
                    deletes.push(args);
                }
            }
            _ => {}
        }
    }
    for chain in &chains {
        deletes.push(vec!["-t".into(), "nat".into(), "-F".into(), chain.clone()]);
    }
    for chain in &chains {
        deletes.push(vec!["-t".into(), "nat".into(), "-X".into(), chain.clone()]);
    }
    deletes
}

#[cfg(test)]
mod tests {
    use super::*;

    /// docker 20.10's nat table, as the testbed shows it.
    const DOCKER_NAT: &str = "-P PREROUTING ACCEPT\n-P INPUT ACCEPT\n-P OUTPUT ACCEPT\n-P POSTROUTING ACCEPT\n-N DOCKER\n-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER\n-A OUTPUT ! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j DOCKER\n-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE\n-A POSTROUTING -s 10.0.0.0/8 -m comment --comment \"not docker's\" -j MASQUERADE\n-A DOCKER -i docker0 -j RETURN\n";

    #[test]
    fn removes_exactly_dockers_rules_and_chains() {
        let cmds: Vec<String> = docker_nat_cleanup(DOCKER_NAT)
            .iter()
            .map(|c| c.join(" "))
            .collect();
        assert_eq!(
            cmds,
            [
                "-t nat -D PREROUTING -m addrtype --dst-type LOCAL -j DOCKER",
                "-t nat -D OUTPUT ! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j DOCKER",
                "-t nat -D POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE",
                "-t nat -F DOCKER",
                "-t nat -X DOCKER",
            ]
        );
    }

    #[test]
    fn a_clean_table_needs_nothing() {
        assert!(docker_nat_cleanup("-P PREROUTING ACCEPT\n-P POSTROUTING ACCEPT\n").is_empty());
    }

    #[test]
    fn quoted_words() {
        assert_eq!(
            words(r#"-A X -m comment --comment "a b" -j Y"#),
            ["-A", "X", "-m", "comment", "--comment", "a b", "-j", "Y"]
        );
    }
}

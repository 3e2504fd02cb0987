//! `tour`: the seed's three exercises replayed on the live lab (and, after them, Services and
//! DNS, what the seed says to study next). Each step runs a real command,
//! shows its output, and says what to notice. English, or Korean with `--lang ko` (the seed's
//! readers are Korean).

use crate::state::LabState;
use anyhow::{bail, Result};
use std::process::Command;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    En,
    Ko,
}

struct Step {
    args: Vec<String>,
    en: String,
    ko: String,
}

fn step(args: &[&str], en: &str, ko: &str) -> Step {
    Step {
        args: args.iter().map(|s| s.to_string()).collect(),
        en: en.into(),
        ko: ko.into(),
    }
}

pub fn tour(lab: &LabState, lang: Lang) -> Result<()> {
    if lab.pod("ubuntu-test").is_err() || lab.pod("multi-container").is_err() {
        bail!("the tour follows the seed: bring up the seed scenario (podnet-lab up) first");
    }
    let me = std::env::current_exe()?.display().to_string();
    let tunnel = if lab.encapsulation == "ipip" {
        "tunl0"
    } else {
        "vxlan.calico"
    };
    let overhead = if lab.encapsulation == "ipip" {
        "20-byte IPIP"
    } else {
        "50-byte VXLAN"
    };
    let store = lab.store().display().to_string();
    let exercises: Vec<(&str, &str, Vec<Step>)> = vec![
        (
            "Exercise 1: a pod's interfaces, and its node's",
            "실습 1: 파드와 노드의 인터페이스",
            vec![
                step(&["get", "pods", "-o", "wide"], "ubuntu-test runs on sung-ubuntu04 with 10.233.99.1: the node's block is 10.233.99.0/24.", "ubuntu-test 파드는 sung-ubuntu04 노드에서 10.233.99.1을 받았습니다. 이 노드의 블록은 10.233.99.0/24 입니다."),
                step(&["ifconfig", "ubuntu-test"], &format!("eth0 holds a /32 (netmask 255.255.255.255): the pod has no subnet, everything goes to its node. MTU = 1500 minus the {overhead} header."), &format!("eth0 은 /32 (netmask 255.255.255.255) 주소를 가집니다. 파드에는 서브넷이 없고 모든 패킷은 노드로 갑니다. MTU 는 1500 에서 {overhead} 헤더를 뺀 값입니다.")),
                step(&["ifconfig", "sung-ubuntu04"], &format!("{tunnel} holds 10.233.99.0/32, the first address of the node's block; the pods get the rest. Each cali interface is a pod's veth, MAC ee:ee:ee:ee:ee:ee, no address."), &format!("{tunnel} 은 노드 블록의 첫 주소 10.233.99.0/32 를 가지고, 파드들은 나머지 주소를 받습니다. cali 로 시작하는 인터페이스는 파드의 veth 이며 MAC 은 ee:ee:ee:ee:ee:ee, 주소는 없습니다.")),
                step(&["!podnet-ipam", "--datastore", &store, "show"], "The pool 10.233.64.0/18 holds 64 /24 blocks (third octet 64..127), not 156 as the seed's arithmetic says.", "풀 10.233.64.0/18 은 /24 블록 64개 (세 번째 옥텟 64..127) 를 담습니다. 원문의 156개 계산은 틀렸습니다."),
            ],
        ),
        (
            "Exercise 2: two containers, one network namespace",
            "실습 2: 컨테이너 두 개, 네트워크 네임스페이스 하나",
            vec![
                step(&["exec", "multi-container", "-c", "ubuntu", "--", "ip", "-br", "link", "show", "dev", "eth0"], "From the ubuntu container: eth0 and its MAC...", "ubuntu 컨테이너에서 본 eth0 와 MAC..."),
                step(&["exec", "multi-container", "-c", "nginx", "--", "ip", "-br", "link", "show", "dev", "eth0"], "...and from the nginx container: the same interface, same MAC. Both live in the pod's one namespace.", "...nginx 컨테이너에서 본 것도 같은 인터페이스, 같은 MAC 입니다. 두 컨테이너는 파드의 네임스페이스 하나를 공유합니다."),
                step(&["exec", "multi-container", "-c", "ubuntu", "--", &me, "http-get", "http://localhost:80/"], "ubuntu reaches nginx on localhost: same namespace, same loopback.", "ubuntu 컨테이너가 localhost 로 nginx 에 접속합니다. 같은 네임스페이스, 같은 loopback 입니다."),
                step(&["exec", "multi-container", "-c", "ubuntu", "--", "timeout", "2", &me, "serve-http", "--port", "80"], "A second server on port 80 in the same pod fails: address in use. Containers of a pod can't share a port.", "같은 파드에서 80 포트를 두 번 쓸 수는 없습니다: address in use."),
            ],
        ),
        (
            "Exercise 3: how a pod on one node reaches a pod on another",
            "실습 3: 한 노드의 파드가 다른 노드의 파드에 닿는 길",
            vec![
                step(&["routes", "sung-ubuntu04"], &format!("Every other node's /24 goes via that node through {tunnel}; the local /24 is a blackhole ('*'); each local pod has a /32 on its cali interface."), &format!("다른 노드의 /24 는 그 노드를 거쳐 {tunnel} 로 갑니다. 자기 /24 는 blackhole ('*') 이고, 각 로컬 파드는 cali 인터페이스에 /32 경로를 가집니다.")),
                step(&["trace", "ubuntu-test", "multi-container"], &format!("Hop 1 is the pod's own node; hop 2 is sung-ubuntu05's {tunnel}: the packet crossed the tunnel; hop 3 is the pod."), &format!("1번 홉은 파드의 노드, 2번 홉은 sung-ubuntu05 의 {tunnel}: 터널을 건넜습니다. 3번 홉이 목적지 파드입니다.")),
                step(&["explain", "ubuntu-test", "multi-container"], "The same path from the kernel's own route lookups. Knowing a pod's IP tells which node it is on.", "커널의 경로 조회로 본 같은 길입니다. 파드 IP 를 알면 어느 노드에 있는지 알 수 있습니다."),
            ],
        ),
    ];
    let mut exercises = exercises;
    if let Some(host) = lab
        .scenario
        .outside
        .as_ref()
        .map(|o| o.hosts[0].ip.to_string())
    {
        // The seed's first check inside a pod is `ping 8.8.8.8`.
        exercises[0].2.insert(0, step(
            &["exec", "ubuntu-test", "--", "ping", "-c", "2", &host],
            &format!("The seed starts inside the pod with `ping 8.8.8.8`: the internet answers. The lab never sends traffic to real public addresses, so its internet is a namespace behind the upstream router with documentation addresses (RFC 5737): {host} stands in for 8.8.8.8. That upstream router has no route to the pod pool, like a real provider: the reply comes back only because the pod's node masquerades it (Calico's natOutgoing)."),
            &format!("원문은 파드 안에서 `ping 8.8.8.8` 로 시작합니다: 인터넷이 응답합니다. 랩은 실제 공인 주소로 트래픽을 보내지 않으므로, 업스트림 라우터 뒤에 문서용 주소(RFC 5737)를 쓰는 네임스페이스를 인터넷으로 둡니다: {host} 가 8.8.8.8 을 대신합니다. 업스트림 라우터에는 파드 풀로 가는 경로가 없습니다(실제 인터넷 사업자처럼). 응답이 돌아오는 것은 파드의 노드가 출발지 주소를 자기 주소로 바꾸기(masquerade, Calico 의 natOutgoing) 때문입니다."),
        ));
        exercises[0].2.insert(1, step(
            &["explain", "ubuntu-test", &host],
            "Where the masquerade happens: the rule of the node's nftables table `ip podnet` that matched, read from the kernel.",
            "masquerade 가 일어나는 곳: 커널에서 읽은 노드의 nftables 테이블 `ip podnet` 의 규칙입니다.",
        ));
    }
    if !lab.scenario.services.is_empty() {
        // What the seed tells its readers to study next: kube-proxy and the cluster's DNS.
        exercises.push((
            "Next: Services and DNS (kube-proxy and node-local DNS)",
            "다음: 서비스와 DNS (kube-proxy 와 node-local DNS)",
            vec![
                step(&["get", "svc"], "The seed's nodes carry kube-ipvs0 with 10.233.0.1: the ClusterIP of the kubernetes Service (kube-proxy in IPVS mode puts every ClusterIP on that dummy device). Here it is, with web in front of the nginx pods.", "원문의 노드에는 10.233.0.1 을 가진 kube-ipvs0 가 있습니다. kubernetes 서비스의 ClusterIP 입니다 (IPVS 모드의 kube-proxy 는 모든 ClusterIP 를 이 dummy 장치에 둡니다). 여기 그 서비스와, nginx 파드 앞의 web 서비스가 있습니다."),
                step(&["get", "endpoints"], "A Service's endpoints are the running pods its selector matches (kubernetes: the three control-plane nodes' API servers). Nobody has the ClusterIP itself.", "서비스의 엔드포인트는 셀렉터에 맞는 실행 중인 파드입니다 (kubernetes 는 컨트롤 플레인 노드 세 대의 API 서버). ClusterIP 자체를 가진 곳은 없습니다."),
                step(&["exec", "ubuntu-test", "--", "cat", "/etc/resolv.conf"], "Why a pod asks 169.254.25.10 at all: kubelet writes every pod's resolv.conf, the cluster DNS first, then the seed's own dnsConfig nameserver 8.8.8.8, and a search list, so the short name web becomes web.default.svc.cluster.local. The file is the pod's own, mounted over the host's in the pod's mount namespace.", "파드가 169.254.25.10 에 묻는 이유: kubelet 이 파드마다 resolv.conf 를 씁니다. 클러스터 DNS 가 먼저, 그 다음 원문의 dnsConfig 네임서버 8.8.8.8, 그리고 search 목록이 있어서 짧은 이름 web 이 web.default.svc.cluster.local 이 됩니다. 이 파일은 파드의 마운트 네임스페이스에서 호스트의 파일 위에 마운트된 파드만의 파일입니다."),
                step(&["exec", "ubuntu-test", "--", &me, "resolve", "web"], "The name resolves at 169.254.25.10, the node-local DNS (the seed's nodelocaldns device); no dummy device here: the address sits on the node's lo, and the pod reaches it through its default route.", "이름은 node-local DNS 인 169.254.25.10 에서 풀립니다 (원문의 nodelocaldns 장치). 여기에는 dummy 장치가 없어서 주소는 노드의 lo 에 있고, 파드는 기본 경로로 그곳에 닿습니다."),
                step(&["exec", "ubuntu-test", "--", &me, "http-get", "http://10.233.0.10/"], "A request to the ClusterIP lands on one of the nginx pods.", "ClusterIP 로 보낸 요청이 nginx 파드 중 하나에 닿습니다."),
                step(&["trace", "ubuntu-test", "web"], "A traceroute to the Service: TCP SYNs to port 80 (an ICMP echo would not be DNATed). Every hop seems to answer from the ClusterIP, because undoing the DNAT rewrites the routers' ICMP errors too; in brackets, who really answered.", "서비스로 가는 traceroute: 80 번 포트로 TCP SYN 을 보냅니다 (ICMP echo 는 DNAT 되지 않습니다). DNAT 을 되돌릴 때 라우터의 ICMP 오류도 고쳐 쓰기 때문에 모든 홉이 ClusterIP 에서 답하는 것처럼 보입니다. 괄호 안이 실제로 답한 곳입니다."),
                step(&["explain", "ubuntu-test", "web"], "How: this host has no IPVS, so the lab does what kube-proxy's nftables mode does. On the pod's node, a verdict map by address, protocol and port sends the packet to the Service's chain, which picks an endpoint at random and DNATs to it; conntrack keeps the choice for the connection. Then the packet takes the pod path of exercise 3.", "어떻게: 이 호스트에는 IPVS 가 없어서, 랩은 nftables 모드의 kube-proxy 처럼 합니다. 파드의 노드에서 주소·프로토콜·포트로 찾는 verdict map 이 패킷을 서비스 체인으로 보내고, 그 체인이 엔드포인트를 무작위로 골라 DNAT 합니다. conntrack 이 연결 동안 그 선택을 기억합니다. 그 다음은 실습 3 의 파드 경로와 같습니다."),
            ],
        ));
    }
    if lab.bgp() {
        // The step the seed leaves implicit: where the routes of exercise 3 come from.
        exercises[2].2.insert(1, step(
            &["bgp", "sung-ubuntu04"],
            "How does sung-ubuntu04 know that 10.233.78.0/24 is behind sung-ubuntu05? Nobody wrote that route by hand: every node runs BIRD, a BGP speaker, with a session (TCP 179) to every other node, the node-to-node mesh. sung-ubuntu05 announces its block with itself as the next hop, and sung-ubuntu04's BIRD installs the route ('bird' in the Origin column above). `explain` below shows BIRD's own answer for the route.",
            "sung-ubuntu04 는 10.233.78.0/24 가 sung-ubuntu05 뒤에 있다는 것을 어떻게 알까요? 누가 손으로 넣은 경로가 아닙니다. 모든 노드에서 BGP 데몬 BIRD 가 돌고, 다른 모든 노드와 세션(TCP 179)을 맺습니다 (node-to-node mesh). sung-ubuntu05 가 자기 블록을 자기 주소를 next hop 으로 광고하면, sung-ubuntu04 의 BIRD 가 그 경로를 커널에 넣습니다 (위 표의 Origin 칸의 'bird'). 아래 explain 이 그 경로에 대한 BIRD 의 답을 보여 줍니다.",
        ));
    }
    if crate::runtime::on_path("iperf3") {
        // What the path of exercise 3 gives a pod, and what the tunnel costs.
        let tunnel = lab.encapsulation.clone();
        exercises[2].2.push(step(
            &["perf", "ubuntu-test", "multi-container", "--seconds", "1"],
            &format!("What that path gives a pod: TCP throughput and requests a second across the {tunnel} encapsulation, beside the two nodes talking directly over the same fabric. The difference is what the encapsulation costs: bytes of every packet (hence the smaller pod MTU) and the tunnel's work."),
            &format!("그 길이 파드에게 주는 것: {tunnel} 캡슐화를 지나는 TCP 처리량과 초당 요청 수를, 같은 패브릭 위에서 두 노드가 직접 주고받는 것과 나란히 봅니다. 그 차이가 캡슐화의 비용입니다: 패킷마다 붙는 바이트 (그래서 파드 MTU 가 작습니다) 와 터널의 처리."),
        ));
    }
    let bin_dir = std::env::current_exe()?.parent().map(|p| p.to_path_buf());
    for (title_en, title_ko, mut steps) in exercises {
        // podnet-ipam show reads the SQLite file; an etcd lab has none.
        steps.retain(|s| lab.datastore == "sqlite" || s.args[0] != "!podnet-ipam");
        println!(
            "\n=== {} ===",
            if lang == Lang::Ko { title_ko } else { title_en }
        );
        for s in steps {
            let (program, args) = match s.args[0].strip_prefix('!') {
                Some(tool) => (
                    bin_dir
                        .as_ref()
                        .map(|d| d.join(tool))
                        .unwrap_or_else(|| tool.into()),
                    s.args[1..].to_vec(),
                ),
                None => (std::env::current_exe()?, s.args.clone()),
            };
            let shown = program
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default();
            println!("\n$ {shown} {}", args.join(" "));
            let out = Command::new(&program).args(&args).output()?;
            let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
            text.push_str(&String::from_utf8_lossy(&out.stderr));
            for line in text.lines().take(40) {
                println!("  {line}");
            }
            println!("-> {}", if lang == Lang::Ko { &s.ko } else { &s.en });
        }
    }
    Ok(())
}

//! What an operator installs from, checked by the tools of each format: every systemd unit in
//! `infra/systemd` passes `systemd-analyze verify` (against a root holding the binary they run),
//! every Kubernetes manifest in `infra/k8s` validates against the Kubernetes schema
//! (`kubernetes-validate --strict`), and the Compose file against the Compose specification's
//! schema (`check-jsonschema`). No container runtime or cluster is started here.

use std::path::{Path, PathBuf};

use nerve_platform::services::tools_program;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_owned()
}

/// The files in `dir` ending in `ext`, sorted.
fn files(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    out.sort();
    out
}

async fn run(program: &Path, args: &[&str]) -> (bool, String) {
    let out = tokio::process::Command::new(program)
        .args(args)
        .output()
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", program.display()));
    (out.status.success(), crate::support::said(&out))
}

#[tokio::test]
async fn every_systemd_unit_passes_systemd_analyze_verify() {
    let root = tempfile::tempdir().expect("tmp");
    let bin = root.path().join("usr/local/bin");
    let system = root.path().join("etc/systemd/system");
    std::fs::create_dir_all(&bin).expect("mkdir");
    std::fs::create_dir_all(&system).expect("mkdir");
    std::fs::copy(env!("CARGO_BIN_EXE_nerve"), bin.join("nerve")).expect("the binary");
    let mut units = Vec::new();
    for ext in ["service", "slice"] {
        for unit in files(&repo().join("infra/systemd"), ext) {
            let to = system.join(unit.file_name().expect("name"));
            std::fs::copy(&unit, &to).expect("copy unit");
            units.push(to.display().to_string());
        }
    }
    assert_eq!(units.len(), 4, "{units:?}");
    let (ok, said) = crate::install::verify_units(root.path(), &units).await;
    assert!(ok, "systemd-analyze verify: {said}");

    // The check sees a broken unit: one whose program is missing.
    std::fs::remove_file(bin.join("nerve")).expect("rm");
    let (ok, said) = crate::install::verify_units(root.path(), &units[..1]).await;
    assert!(!ok && said.contains("/usr/local/bin/nerve"), "{said}");
}

#[tokio::test]
async fn every_kubernetes_manifest_validates_strictly() {
    let manifests = files(&repo().join("infra/k8s"), "yaml");
    assert!(manifests.len() >= 7, "{manifests:?}");
    let paths: Vec<String> = manifests.iter().map(|p| p.display().to_string()).collect();
    let mut args = vec!["--strict", "--quiet"];
    args.extend(paths.iter().map(String::as_str));
    let (ok, said) = run(&tools_program("kubernetes-validate"), &args).await;
    assert!(ok, "kubernetes-validate: {said}");
    // Every kind the deployment needs is there.
    let all: String = manifests
        .iter()
        .map(|p| std::fs::read_to_string(p).expect("read"))
        .collect();
    for kind in [
        "kind: Namespace",
        "kind: StatefulSet",
        "kind: Deployment",
        "kind: DaemonSet",
        "kind: Service",
    ] {
        assert!(all.contains(kind), "{kind}");
    }

    // The validator refuses a field Kubernetes does not have.
    let dir = tempfile::tempdir().expect("tmp");
    let bad = dir.path().join("bad.yaml");
    let serve = std::fs::read_to_string(repo().join("infra/k8s/50-serve.yaml")).expect("read");
    std::fs::write(&bad, serve.replace("replicas: 2", "replicaz: 2")).expect("write");
    let (ok, said) = run(
        &tools_program("kubernetes-validate"),
        &["--strict", "--quiet", &bad.display().to_string()],
    )
    .await;
    assert!(!ok && said.contains("replicaz"), "{said}");
}

#[tokio::test]
async fn the_compose_file_follows_the_compose_specification() {
    let compose = repo().join("infra/docker/compose.yaml");
    let check = |path: PathBuf| async move {
        run(
            &tools_program("check-jsonschema"),
            &[
                "--builtin-schema",
                "vendor.compose-spec",
                &path.display().to_string(),
            ],
        )
        .await
    };
    let (ok, said) = check(compose.clone()).await;
    assert!(ok, "check-jsonschema: {said}");
    let text = std::fs::read_to_string(&compose).expect("read");
    for needed in [
        "nats:",
        "clickhouse:",
        "serve:",
        "project:",
        "agent:",
        "infra/docker/Dockerfile",
    ] {
        assert!(text.contains(needed), "{needed}");
    }
    assert!(repo().join("infra/docker/Dockerfile").is_file());

    let dir = tempfile::tempdir().expect("tmp");
    let bad = dir.path().join("compose.yaml");
    std::fs::write(
        &bad,
        text.replace("command: [\"serve\"]", "commandz: [\"serve\"]"),
    )
    .expect("write");
    let (ok, said) = check(bad).await;
    assert!(!ok && said.contains("commandz"), "{said}");
}

#[tokio::test]
async fn keys_init_makes_the_shared_keys_once() {
    let dir = tempfile::tempdir().expect("tmp");
    let keys = dir.path().join("keys");
    let nerve = Path::new(env!("CARGO_BIN_EXE_nerve"));
    let arg = keys.display().to_string();
    let (ok, first) = run(nerve, &["keys", "init", &arg]).await;
    assert!(ok, "{first}");
    let read = |name: &str| std::fs::read(keys.join(name)).expect(name);
    let (secrets, seed) = (read("secrets.key"), read("dispatch.seed"));
    for name in ["secrets.key", "dispatch.seed"] {
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(keys.join(name))
                .expect("stat")
                .permissions(),
        );
        assert_eq!(mode & 0o777, 0o600, "{name}");
    }
    assert!(first.contains("agent.dispatch_public_key: N"), "{first}");
    // A second run keeps both: every role keeps working with what it was given.
    let (ok, second) = run(nerve, &["keys", "init", &arg]).await;
    assert!(ok && second.contains("kept"), "{second}");
    assert_eq!(
        (read("secrets.key"), read("dispatch.seed")),
        (secrets, seed)
    );
    assert_eq!(
        first.lines().last(),
        second.lines().last(),
        "the same public key"
    );
}

#!/usr/bin/env python3
"""Checks ebpf-agent's deployment files against each other and against what the daemon expects.

usage: check_deploy.py SOURCE_DIR [--cmake CMAKE]

- agent/deploy/kubernetes/*.yaml: every document parses; kinds and apiVersions; names, namespaces,
  labels and selectors agree (DaemonSet selector and template, Service and pods, the cleanup
  workload apart from the agent); volumes and the ConfigMap they name; the --config path is a key
  of the mounted ConfigMap; config.toml parses and has the deployment keys; its checksum
  annotation; probes and ports; no hostNetwork, nothing privileged, exactly the three
  capabilities; the cleanup workload uses the agent's image, config, bpffs and cgroup mounts and
  reaches the same nodes.
- agent/deploy/ebpf-agent.service: parses as INI; the service keys; the binary path is where
  the install rules put it; `systemd-analyze verify` when it is installed.
- agent/deploy/CMakeLists.txt: installing into a scratch DESTDIR yields the unit and the config
  (needs cmake), and agent/CMakeLists.txt installs the binary to sbin and includes deploy/.
Exits 1 listing every failed check.
"""
import argparse
import configparser
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib

import yaml

PREFIX = "/usr"  # the prefix the unit in the source tree is written for (a package's)
BINARY = PREFIX + "/sbin/ebpf-agent"  # ${CMAKE_INSTALL_FULL_SBINDIR}/ebpf-agent
CONFIG = "/etc/ebpf-agent/config.toml"  # ${CMAKE_INSTALL_FULL_SYSCONFDIR}/ebpf-agent/...
BPFFS_DIR = "/sys/fs/bpf/ebpf-agent"
CAPS = {"BPF", "NET_ADMIN", "SYS_ADMIN", "DAC_READ_SEARCH"}
METRIC_PATHS = {"livenessProbe": "/healthz", "readinessProbe": "/readyz", "startupProbe": "/readyz"}

# kind -> (apiVersion, namespaced)
KINDS = {
    "Namespace": ("v1", False),
    "ConfigMap": ("v1", True),
    "Service": ("v1", True),
    "DaemonSet": ("apps/v1", True),
    "Job": ("batch/v1", True),
}
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
DNS_SUBDOMAIN = re.compile(
    r"^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$")
PORT_NAME = re.compile(r"^(?=.{1,15}$)(?=.*[a-z])[a-z0-9]+(-[a-z0-9]+)*$")

errors = []
notes = []


def check(cond, msg):
    if not cond:
        errors.append(msg)
    return bool(cond)


def where(doc):
    m = doc.get("metadata") or {}
    return f"{doc.get('kind')}/{m.get('name')}"


# ----------------------------------------------------------------------------------------------
# Kubernetes manifests


def load_yaml(path):
    try:
        with open(path, encoding="utf-8") as f:
            docs = [d for d in yaml.safe_load_all(f) if d is not None]
    except (OSError, yaml.YAMLError) as e:
        check(False, f"{path}: does not parse as YAML: {e}")
        return []
    for d in docs:
        if not check(isinstance(d, dict), f"{path}: a document is not a mapping"):
            continue
        d["__file"] = os.path.basename(path)
    return [d for d in docs if isinstance(d, dict)]


def check_object(doc, namespaces):
    kind, meta = doc.get("kind"), doc.get("metadata") or {}
    name = meta.get("name", "")
    at = f"{doc['__file']}: {where(doc)}"
    if not check(kind in KINDS, f"{at}: kind {kind!r} is not one of {sorted(KINDS)}"):
        return
    api, namespaced = KINDS[kind]
    check(doc.get("apiVersion") == api, f"{at}: apiVersion {doc.get('apiVersion')!r}, want {api!r}")
    pattern = DNS_LABEL if kind in ("Namespace", "Service") else DNS_SUBDOMAIN
    check(pattern.match(name or ""), f"{at}: name {name!r} is not a valid {kind} name")
    if namespaced:
        check(meta.get("namespace") in namespaces,
              f"{at}: namespace {meta.get('namespace')!r} is not a Namespace of the manifests "
              f"({sorted(namespaces)})")
    else:
        check("namespace" not in meta, f"{at}: a {kind} has no namespace")
    for key, value in (meta.get("labels") or {}).items():
        check(isinstance(value, str) and LABEL_VALUE.match(value) and len(value) <= 63,
              f"{at}: label {key}={value!r} is not a valid label value")
    for key, value in (meta.get("annotations") or {}).items():
        check(isinstance(value, str), f"{at}: annotation {key} must be a string, not {value!r}")


def selector_matches(selector, labels):
    """matchLabels only; matchExpressions are reported as unsupported by this check."""
    if not selector:
        return False
    check(not selector.get("matchExpressions"), "selectors with matchExpressions are not checked")
    match = selector.get("matchLabels") or {}
    return bool(match) and all(labels.get(k) == v for k, v in match.items())


def pod_template(doc):
    return (doc.get("spec") or {}).get("template") or {}


def containers(pod_spec):
    return (pod_spec.get("initContainers") or []) + (pod_spec.get("containers") or [])


def config_arg(container):
    """The value of --config in command+args, or None."""
    argv = (container.get("command") or []) + (container.get("args") or [])
    for i, a in enumerate(argv):
        if a == "--config" and i + 1 < len(argv):
            return argv[i + 1]
        if isinstance(a, str) and a.startswith("--config="):
            return a.split("=", 1)[1]
    return None


def verb(container):
    argv = (container.get("command") or [])[1:] + (container.get("args") or [])
    return argv[0] if argv else None


def check_pod(doc, configmaps, agent_image):
    """Checks common to the agent's and the cleanup's pods. Returns the agent-image containers."""
    at = f"{doc['__file']}: {where(doc)}"
    template = pod_template(doc)
    spec = template.get("spec") or {}
    labels = (template.get("metadata") or {}).get("labels") or {}
    selector = (doc.get("spec") or {}).get("selector")
    if doc.get("kind") == "DaemonSet" or selector:
        check(selector_matches(selector, labels),
              f"{at}: selector {selector} does not match the pod template's labels {labels}")
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        check(spec.get(key) is not True, f"{at}: {key} is true")
    check(isinstance(spec.get("terminationGracePeriodSeconds"), int),
          f"{at}: no terminationGracePeriodSeconds")
    volumes = {v.get("name"): v for v in spec.get("volumes") or []}
    check(len(volumes) == len(spec.get("volumes") or []), f"{at}: two volumes with one name")
    for v in volumes.values():
        if "configMap" in v:
            cm = v["configMap"].get("name")
            check(cm in configmaps, f"{at}: volume {v['name']} names ConfigMap {cm!r}, which the "
                                    f"manifests do not define ({sorted(configmaps)})")
    names = [c.get("name") for c in containers(spec)]
    check(len(set(names)) == len(names), f"{at}: two containers with one name")
    agents = []
    for c in containers(spec):
        cat = f"{at}: container {c.get('name')}"
        check(DNS_LABEL.match(c.get("name") or ""), f"{cat}: not a valid container name")
        sc = c.get("securityContext") or {}
        check(sc.get("privileged") is not True, f"{cat}: privileged")
        caps = sc.get("capabilities") or {}
        check(caps.get("drop") == ["ALL"],
              f"{cat}: capabilities.drop is {caps.get('drop')}, want [ALL]")
        check(sc.get("readOnlyRootFilesystem") is True,
              f"{cat}: readOnlyRootFilesystem is not true")
        for m in c.get("volumeMounts") or []:
            check(m.get("name") in volumes, f"{cat}: volumeMount {m.get('name')!r} names no volume")
            prop = m.get("mountPropagation")
            if prop == "Bidirectional":
                check(sc.get("privileged") is True,
                      f"{cat}: mountPropagation Bidirectional needs a privileged container")
        if c.get("image") == agent_image or (c.get("command") or [None])[0] == BINARY:
            agents.append(c)
            check(c.get("image") == agent_image,
                  f"{cat}: image {c.get('image')}, the agent's is {agent_image}")
            add = caps.get("add") or []
            check(len(add) == len(set(add)) and set(add) == CAPS,
                  f"{cat}: capabilities.add is {add}, want exactly {sorted(CAPS)}")
            check((c.get("command") or [None])[0] == BINARY,
                  f"{cat}: command {c.get('command')} does not start with {BINARY}")
        else:
            check(not caps.get("add"), f"{cat}: adds capabilities {caps.get('add')}")
    return agents


def mounts_by_host_path(doc, container):
    """hostPath path -> the container's mount of it (with the volume)."""
    spec = pod_template(doc).get("spec") or {}
    volumes = {v.get("name"): v for v in spec.get("volumes") or []}
    out = {}
    for m in container.get("volumeMounts") or []:
        v = volumes.get(m.get("name")) or {}
        if "hostPath" in v:
            out[v["hostPath"].get("path")] = {"mount": m, "volume": v}
    return out


def config_source(doc, container, configmaps):
    """(ConfigMap, key) the container's --config path reads, checking the mount on the way."""
    at = f"{doc['__file']}: {where(doc)}: container {container.get('name')}"
    path = config_arg(container)
    if not check(path, f"{at}: no --config argument"):
        return None, None
    spec = pod_template(doc).get("spec") or {}
    volumes = {v.get("name"): v for v in spec.get("volumes") or []}
    directory, base = os.path.split(path)
    for m in container.get("volumeMounts") or []:
        v = volumes.get(m.get("name")) or {}
        if m.get("mountPath", "").rstrip("/") != directory or "configMap" not in v:
            continue
        cm = configmaps.get(v["configMap"].get("name"))
        if cm is None:
            return None, None  # reported by check_pod
        items = v["configMap"].get("items")
        key = base if not items else next((i["key"] for i in items if i.get("path") == base), None)
        if not check(key is not None and key in (cm.get("data") or {}),
                     f"{at}: --config {path}: the ConfigMap {where(cm)} mounted at {directory} "
                     f"has no key for {base} (keys: {sorted((cm.get('data') or {}))})"):
            return cm, None
        return cm, key
    check(False, f"{at}: --config {path}: no ConfigMap volume is mounted at {directory}")
    return None, None


def named_port(container, port):
    """The containerPort a probe or Service port (name or number) refers to, or None."""
    for p in container.get("ports") or []:
        if port == p.get("name") or port == p.get("containerPort"):
            return p.get("containerPort")
    return None


def check_agent_config(text, at, want):
    """Parses a config.toml and checks the deployment keys. want: expected values."""
    try:
        conf = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        check(False, f"{at}: config.toml does not parse as TOML: {e}")
        return None
    agent, metrics = conf.get("agent") or {}, conf.get("metrics") or {}
    for key, value in want.items():
        section, name = key.split(".")
        got = (agent if section == "agent" else metrics).get(name)
        if callable(value):
            check(value(got), f"{at}: {key} = {got!r} is not acceptable")
        else:
            check(got == value, f"{at}: {key} = {got!r}, want {value!r}")
    check(agent.get("on_stop") in ("detach", "keep"), f"{at}: agent.on_stop must be detach or keep")
    return conf


def split_listen(listen):
    host, _, port = (listen or "").rpartition(":")
    return host.strip("[]"), int(port) if port.isdigit() else None


def check_kubernetes(kdir):
    main_file = os.path.join(kdir, "ebpf-agent.yaml")
    cleanup_file = os.path.join(kdir, "ebpf-agent-cleanup-job.yaml")
    main_docs, cleanup_docs = load_yaml(main_file), load_yaml(cleanup_file)
    docs = main_docs + cleanup_docs
    if not docs:
        return
    namespaces = {d["metadata"]["name"] for d in docs
                  if d.get("kind") == "Namespace" and (d.get("metadata") or {}).get("name")}
    check(len(namespaces) == 1, f"want one Namespace, found {sorted(namespaces)}")
    for d in docs:
        check_object(d, namespaces)
    seen = set()
    for d in docs:
        meta = d.get("metadata") or {}
        key = (d.get("kind"), meta.get("namespace"), meta.get("name"))
        check(key not in seen, f"{d['__file']}: {where(d)} is defined twice")
        seen.add(key)

    def one(kind, pool, file):
        found = [d for d in pool if d.get("kind") == kind]
        check(len(found) == 1, f"{file}: want one {kind}, found {len(found)}")
        return found[0] if found else None

    cm_doc = one("ConfigMap", main_docs, "ebpf-agent.yaml")
    ds = one("DaemonSet", main_docs, "ebpf-agent.yaml")
    svc = one("Service", main_docs, "ebpf-agent.yaml")
    cleanups = [d for d in cleanup_docs if d.get("kind") in ("DaemonSet", "Job")]
    check(len(cleanups) == 1,
          f"ebpf-agent-cleanup-job.yaml: want one DaemonSet or Job, found {len(cleanups)}")
    check(all(d.get("kind") in ("DaemonSet", "Job") for d in cleanup_docs),
          "ebpf-agent-cleanup-job.yaml: holds more than the cleanup workload (the Namespace and "
          "ConfigMap come from ebpf-agent.yaml)")
    if not (cm_doc and ds and svc):
        return
    configmaps = {d["metadata"]["name"]: d for d in docs if d.get("kind") == "ConfigMap"}

    # The agent's DaemonSet.
    images = {c.get("image") for c in (pod_template(ds).get("spec") or {}).get("containers") or []}
    agent_image = next(iter(images)) if len(images) == 1 else None
    check(agent_image, f"{where(ds)}: want one container image, found {sorted(map(str, images))}")
    agents = check_pod(ds, configmaps, agent_image)
    if not check(len(agents) == 1, f"{where(ds)}: want one agent container"):
        return
    agent = agents[0]
    at = f"ebpf-agent.yaml: {where(ds)}"
    check(verb(agent) == "run", f"{at}: the agent's verb is {verb(agent)!r}, want 'run'")
    template = pod_template(ds)
    pod_labels = (template.get("metadata") or {}).get("labels") or {}
    own = (ds["metadata"].get("labels") or {}).items()
    check(own >= ((ds["spec"].get("selector") or {}).get("matchLabels") or {}).items(),
          f"{at}: the DaemonSet's own labels lack its selector's")

    # Its config.
    cm, key = config_source(ds, agent, configmaps)
    host = mounts_by_host_path(ds, agent)
    bpffs, cgroup = host.get("/sys/fs/bpf"), host.get("/sys/fs/cgroup")
    if check(bpffs, f"{at}: the host's /sys/fs/bpf is not mounted (hostPath)"):
        check(bpffs["mount"].get("mountPropagation") in ("HostToContainer", "Bidirectional"),
              f"{at}: the bpffs mount needs mountPropagation HostToContainer or Bidirectional")
        check(not bpffs["mount"].get("readOnly"), f"{at}: the bpffs mount is read-only")
    check(cgroup, f"{at}: the host's /sys/fs/cgroup is not mounted (hostPath)")
    ports = {p.get("name"): p.get("containerPort") for p in agent.get("ports") or []}
    for name in ports:
        check(PORT_NAME.match(name or ""), f"{at}: port name {name!r} is not valid")
    metrics_port = ports.get("metrics")
    check(metrics_port, f"{at}: the agent has no port named metrics")
    if cm is not None and key is not None:
        text = cm["data"][key]
        conf_at = f"ebpf-agent.yaml: {where(cm)} {key}"
        want = {
            "agent.on_stop": "keep",
            "agent.bpffs_dir": BPFFS_DIR,
            "metrics.listen": lambda v: split_listen(v) == ("0.0.0.0", metrics_port),
        }
        if cgroup:
            want["agent.cgroup"] = cgroup["mount"].get("mountPath", "").rstrip("/")
        conf = check_agent_config(text, conf_at, want)
        if conf and bpffs:
            mount = bpffs["mount"].get("mountPath", "").rstrip("/")
            check((conf.get("agent") or {}).get("bpffs_dir", "").startswith(mount + "/"),
                  f"{conf_at}: bpffs_dir is not under the bpffs mount {mount}")
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
        annotations = (template.get("metadata") or {}).get("annotations") or {}
        check(annotations.get("checksum/config") == digest,
              f"{at}: pod annotation checksum/config is {annotations.get('checksum/config')!r}; "
              f"the sha256 of {where(cm)} {key} is \"{digest}\"")

    # Probes.
    for probe, path in METRIC_PATHS.items():
        p = agent.get(probe)
        if probe != "startupProbe" and not check(p, f"{at}: no {probe}"):
            continue
        if p:
            get = p.get("httpGet") or {}
            check(get.get("path") == path, f"{at}: {probe} path {get.get('path')!r}, want {path!r}")
            check(metrics_port and named_port(agent, get.get("port")) == metrics_port,
                  f"{at}: {probe} port {get.get('port')!r} is not the metrics port")

    # The Service.
    sat = f"ebpf-agent.yaml: {where(svc)}"
    sspec = svc.get("spec") or {}
    check(sspec.get("clusterIP") == "None", f"{sat}: not headless (clusterIP: None)")
    check(svc["metadata"].get("namespace") == ds["metadata"].get("namespace"),
          f"{sat}: not in the DaemonSet's namespace")
    check(selector_matches({"matchLabels": sspec.get("selector")}, pod_labels),
          f"{sat}: selector {sspec.get('selector')} does not select the DaemonSet's pods "
          f"{pod_labels}")
    for p in sspec.get("ports") or []:
        check(named_port(agent, p.get("targetPort", p.get("port"))) == metrics_port,
              f"{sat}: port {p.get('name')} targets {p.get('targetPort')!r}, not the metrics port")
        check(p.get("port") == metrics_port, f"{sat}: port {p.get('port')}, want {metrics_port}")
    check(sspec.get("ports"), f"{sat}: no ports")
    ann = (svc["metadata"].get("annotations") or {})
    if "prometheus.io/port" in ann:
        check(ann["prometheus.io/port"] == str(metrics_port),
              f"{sat}: prometheus.io/port is not {metrics_port}")

    # The cleanup workload.
    if not cleanups:
        return
    cl = cleanups[0]
    cat = f"ebpf-agent-cleanup-job.yaml: {where(cl)}"
    cl_agents = check_pod(cl, configmaps, agent_image)
    check(cl["metadata"].get("namespace") == ds["metadata"].get("namespace"),
          f"{cat}: not in the agent's namespace")
    check(len(cl_agents) == 1, f"{cat}: want one container with the agent's image {agent_image}")
    cl_labels = (pod_template(cl).get("metadata") or {}).get("labels") or {}
    check(not selector_matches(ds["spec"]["selector"], cl_labels),
          f"{cat}: the agent DaemonSet's selector also selects the cleanup pods")
    check(not selector_matches({"matchLabels": sspec.get("selector")}, cl_labels),
          f"{sat}: the Service also selects the cleanup pods")
    if cl.get("kind") == "DaemonSet":
        check(not selector_matches(cl["spec"].get("selector"), pod_labels),
              f"{cat}: its selector also selects the agent's pods")
    cl_spec, ds_spec = pod_template(cl).get("spec") or {}, template.get("spec") or {}
    if cl.get("kind") == "Job":
        check(cl_spec.get("nodeName"), f"{cat}: a Job without nodeName cleans one arbitrary node")
    else:
        for field in ("tolerations", "nodeSelector", "affinity"):
            check(cl_spec.get(field) == ds_spec.get(field),
                  f"{cat}: {field} differs from the agent's, so it does not reach the same nodes")
    if not cl_agents:
        return
    c = cl_agents[0]
    check(verb(c) == "cleanup", f"{cat}: the verb is {verb(c)!r}, want 'cleanup'")
    check(config_arg(c) == config_arg(agent),
          f"{cat}: --config {config_arg(c)!r}, the agent's is {config_arg(agent)!r}")
    ccm, ckey = config_source(cl, c, configmaps)
    check(ccm is cm and ckey == key,
          f"{cat}: reads its config from {ccm and where(ccm)} {ckey}, the agent from "
          f"{cm and where(cm)} {key}")
    chost = mounts_by_host_path(cl, c)
    for path in ("/sys/fs/bpf", "/sys/fs/cgroup"):
        a, b = host.get(path), chost.get(path)
        if not check(b, f"{cat}: the host's {path} is not mounted"):
            continue
        if a:
            for field in ("mountPath", "mountPropagation", "readOnly"):
                check(a["mount"].get(field) == b["mount"].get(field),
                      f"{cat}: the mount of {path} has {field} {b['mount'].get(field)!r}, "
                      f"the agent's {a['mount'].get(field)!r}")
            check(a["volume"]["hostPath"] == b["volume"]["hostPath"],
                  f"{cat}: hostPath {b['volume']['hostPath']} differs from the agent's "
                  f"{a['volume']['hostPath']}")
    check((c.get("securityContext") or {}) == (agent.get("securityContext") or {}),
          f"{cat}: the cleanup container's securityContext differs from the agent's")


# ----------------------------------------------------------------------------------------------
# systemd unit


def unit_values(path):
    """section -> key -> [values] (systemd keys may repeat; configparser keeps only the last)."""
    out, section, pending = {}, None, ""
    with open(path, encoding="utf-8") as f:
        for raw in f:
            line = pending + raw.rstrip("\n")
            pending = ""
            if line.endswith("\\"):
                pending = line[:-1] + " "
                continue
            s = line.strip()
            if not s or s[0] in "#;":
                continue
            if s.startswith("[") and s.endswith("]"):
                section = s[1:-1]
                out.setdefault(section, {})
                continue
            k, _, v = s.partition("=")
            out.setdefault(section, {}).setdefault(k.strip(), []).append(v.strip())
    return out


def yes(values):
    return bool(values) and values[-1].lower() in ("1", "yes", "true", "on")


def check_unit(unit):
    at = os.path.basename(unit)
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str
    try:
        parser.read(unit, encoding="utf-8")
    except configparser.Error as e:
        check(False, f"{at}: does not parse as INI: {e}")
        return
    for section in ("Unit", "Service", "Install"):
        check(parser.has_section(section), f"{at}: no [{section}]")
    values = unit_values(unit)
    svc = values.get("Service", {})

    def one(key, want):
        got = svc.get(key, [None])[-1]
        check(got == want, f"{at}: {key}={got}, want {want}")

    one("Type", "notify")
    one("NotifyAccess", "main")
    one("Restart", "on-failure")
    check("78" in " ".join(svc.get("RestartPreventExitStatus", [])).split(),
          f"{at}: RestartPreventExitStatus does not include 78 (bad config)")
    check(svc.get("ExecStart") == [f"{BINARY} run --config {CONFIG}"],
          f"{at}: ExecStart={svc.get('ExecStart')}, want '{BINARY} run --config {CONFIG}'")
    check(f"{BINARY} check-config --config {CONFIG}" in svc.get("ExecStartPre", []),
          f"{at}: no ExecStartPre={BINARY} check-config --config {CONFIG}")
    check("/bin/kill -HUP $MAINPID" in svc.get("ExecReload", []),
          f"{at}: no ExecReload=/bin/kill -HUP $MAINPID")
    for key in ("CapabilityBoundingSet", "AmbientCapabilities"):
        caps = " ".join(svc.get(key, [])).split()
        want = sorted("CAP_" + c for c in CAPS)
        check(len(caps) == len(set(caps)) and sorted(caps) == want,
              f"{at}: {key}={' '.join(caps)}, want exactly {' '.join(want)}")
    # Hardening that would break the agent.
    for key in ("DynamicUser", "PrivateUsers", "PrivateNetwork"):
        check(not yes(svc.get(key)), f"{at}: {key}=yes breaks the agent")
    if yes(svc.get("ProtectKernelTunables")) or svc.get("ReadOnlyPaths"):
        rw = [p.lstrip("-+") for p in " ".join(svc.get("ReadWritePaths", [])).split()]
        check(any(BPFFS_DIR == p or BPFFS_DIR.startswith(p.rstrip("/") + "/") for p in rw),
              f"{at}: /sys is read-only (ProtectKernelTunables) but no ReadWritePaths= covers "
              f"{BPFFS_DIR}: pinning would fail")
    for p in " ".join(svc.get("InaccessiblePaths", [])).split():
        p = p.lstrip("-+").rstrip("/")
        check(not BPFFS_DIR.startswith(p + "/") and not "/sys/fs/cgroup".startswith(p),
              f"{at}: InaccessiblePaths={p} hides the bpffs or the cgroup mount")
    families = " ".join(svc.get("RestrictAddressFamilies", [])).split()
    if families and not families[0].startswith("~"):
        check({"AF_UNIX", "AF_INET"} <= set(families),
              f"{at}: RestrictAddressFamilies lacks AF_UNIX ($NOTIFY_SOCKET) or AF_INET (metrics)")
    check("multi-user.target" in values.get("Install", {}).get("WantedBy", []),
          f"{at}: not WantedBy=multi-user.target")

    analyze = shutil.which("systemd-analyze")
    if not analyze:
        notes.append("systemd-analyze is not installed: `systemd-analyze verify` skipped")
        return
    true = shutil.which("true") or "/bin/true"
    with tempfile.TemporaryDirectory() as tmp:
        copy = os.path.join(tmp, "ebpf-agent.service")
        with open(unit, encoding="utf-8") as f:
            text = f.read()
        with open(copy, "w", encoding="utf-8") as f:
            # verify insists that the binaries exist; the agent need not be installed here.
            f.write(text.replace(BINARY, true))
        try:
            r = subprocess.run([analyze, "verify", copy], capture_output=True, text=True,
                               timeout=120)
        except subprocess.TimeoutExpired:
            notes.append("systemd-analyze verify timed out: skipped")
            return
    out = (r.stdout + r.stderr).strip()
    complaints = [l for l in out.splitlines() if "ebpf-agent.service" in l]
    check(r.returncode == 0 and not complaints,
          f"{at}: systemd-analyze verify (exit {r.returncode}):\n  "
          + "\n  ".join(out.splitlines()))


# ----------------------------------------------------------------------------------------------
# Install rules


def strip_cmake_comments(text):
    return "\n".join(re.sub(r"#.*", "", line) for line in text.splitlines())


def check_install(root, cmake):
    deploy = os.path.join(root, "agent", "deploy")
    agent_cmake = os.path.join(root, "agent", "CMakeLists.txt")
    try:
        with open(agent_cmake, encoding="utf-8") as f:
            text = strip_cmake_comments(f.read())
    except OSError as e:
        check(False, f"{agent_cmake}: {e}")
        text = ""
    check(re.search(r"add_subdirectory\s*\(\s*deploy\s*\)", text),
          "agent/CMakeLists.txt: no add_subdirectory(deploy), so the unit and the config are "
          "not installed")
    rule = re.search(r"install\s*\(\s*TARGETS\s+[^)]*\bebpf-agent\b[^)]*\)", text)
    check(rule and "${CMAKE_INSTALL_SBINDIR}" in rule.group(0),
          f"agent/CMakeLists.txt: the binary is not installed to ${{CMAKE_INSTALL_SBINDIR}} "
          f"({rule.group(0) if rule else 'no install(TARGETS ebpf-agent)'}), but the unit runs "
          f"{BINARY}")

    # Install the deploy directory alone into a scratch DESTDIR, with the /usr prefix of a
    # package, and look at what arrives.
    if not cmake:
        notes.append("cmake not found: the install rules were not run")
        return
    with tempfile.TemporaryDirectory() as tmp:
        src, build, dest = (os.path.join(tmp, d) for d in ("src", "build", "dest"))
        os.mkdir(src)
        with open(os.path.join(src, "CMakeLists.txt"), "w", encoding="utf-8") as f:
            f.write("cmake_minimum_required(VERSION 3.20)\nproject(deploy_check LANGUAGES NONE)\n"
                    f"add_subdirectory(\"{deploy}\" deploy)\n")
        env = dict(os.environ, DESTDIR=dest)
        for cmd in ([cmake, "-S", src, "-B", build, f"-DCMAKE_INSTALL_PREFIX={PREFIX}",
                     "-DCMAKE_INSTALL_LIBDIR=lib", "-Wno-dev"],
                    [cmake, "--install", build]):
            r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
            if not check(r.returncode == 0, f"{' '.join(cmd)} failed:\n{r.stdout}{r.stderr}"):
                return
        unit = dest + PREFIX + "/lib/systemd/system/ebpf-agent.service"
        conf = dest + CONFIG
        if check(os.path.isfile(unit),
                 f"install: no {PREFIX}/lib/systemd/system/ebpf-agent.service"):
            with open(unit, encoding="utf-8") as f, open(os.path.join(deploy, "ebpf-agent.service"),
                                                          encoding="utf-8") as g:
                check(f.read() == g.read(),
                      f"install: the unit installed with prefix {PREFIX} differs from the source")
        if check(os.path.isfile(conf), f"install: no {CONFIG}"):
            with open(conf, encoding="utf-8") as f:
                check_agent_config(f.read(), f"installed {CONFIG}", {
                    "agent.bpffs_dir": BPFFS_DIR,
                    "metrics.listen": lambda v: split_listen(v)[0] in ("127.0.0.1", "::1"),
                })


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("source_dir")
    ap.add_argument("--cmake", default=shutil.which("cmake"))
    args = ap.parse_args()
    args.source_dir = os.path.abspath(args.source_dir)
    deploy = os.path.join(args.source_dir, "agent", "deploy")
    check_kubernetes(os.path.join(deploy, "kubernetes"))
    check_unit(os.path.join(deploy, "ebpf-agent.service"))
    check_install(args.source_dir, args.cmake)
    for n in notes:
        print(f"note: {n}")
    if errors:
        for e in errors:
            print(f"FAIL: {e}")
        print(f"{len(errors)} check(s) failed")
        return 1
    print("deploy files: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())

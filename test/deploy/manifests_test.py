#!/usr/bin/env python3
"""Checks the Kubernetes manifests in deploy/kubernetes field by field.

Usage: manifests_test.py DRAWBRIDGE_BINARY [MANIFEST_DIR]

Reads the kustomization and every resource it lists (as `kubectl kustomize`
would take them: plain YAML, namespace and labels applied by the
kustomization), then checks the hardening the deployment promises
(docs/packaging.md): non-root, read-only root, no capabilities, seccomp
RuntimeDefault, no service-account token, requests and limits, probes on
/healthz and /readyz, Prometheus annotations, three server replicas with a
PodDisruptionBudget, and NetworkPolicies that deny by default and allow only
the traffic the product needs. Every command-line flag in a container's args is
checked against the binary's own --help, so the manifests cannot drift from it.

Prints "ok   - ..." / "FAIL - ..." lines and "N passed, M failed"; exits 1 on a
failure.
"""
import ipaddress
import os
import re
import subprocess
import sys

import yaml

PASSED = 0
FAILED = 0


def check(name, cond, detail=""):
    global PASSED, FAILED
    if cond:
        PASSED += 1
        print(f"ok   - {name}")
    else:
        FAILED += 1
        print(f"FAIL - {name}" + (f"\n       {detail}" if detail else ""))


def load_resources(root):
    kust = yaml.safe_load(open(os.path.join(root, "kustomization.yaml")))
    check("kustomization.yaml is a Kustomization",
          kust.get("kind") == "Kustomization", str(kust.get("kind")))
    docs = []
    for res in kust.get("resources", []):
        path = os.path.join(root, res)
        check(f"resource {res} exists", os.path.isfile(path))
        if not os.path.isfile(path):
            continue
        for doc in yaml.safe_load_all(open(path)):
            if doc:
                doc.setdefault("metadata", {})
                if doc["kind"] != "Namespace" and kust.get("namespace"):
                    doc["metadata"]["namespace"] = kust["namespace"]
                docs.append(doc)
    listed = {r for r in kust.get("resources", [])}
    on_disk = {f for f in os.listdir(root)
               if f.endswith(".yaml") and f != "kustomization.yaml"}
    check("every manifest on disk is listed in the kustomization",
          on_disk <= listed, f"not listed: {sorted(on_disk - listed)}")
    return kust, docs


def binary_flags(binary, *command):
    out = subprocess.run([binary, *command, "--help"], capture_output=True, text=True,
                         check=False)
    return set(re.findall(r"(--[a-z][a-z0-9-]*)", out.stdout + out.stderr))


def args_flags(args):
    return {a.split("=", 1)[0] for a in args if a.startswith("--")}


def selects(selector, labels):
    match = (selector or {}).get("matchLabels", {})
    return all(labels.get(k) == v for k, v in match.items())


def check_container(where, c, main):
    sc = c.get("securityContext", {})
    check(f"{where}: allowPrivilegeEscalation false",
          sc.get("allowPrivilegeEscalation") is False)
    check(f"{where}: readOnlyRootFilesystem", sc.get("readOnlyRootFilesystem") is True)
    check(f"{where}: not privileged", sc.get("privileged", False) is False)
    caps = sc.get("capabilities", {})
    check(f"{where}: drops ALL capabilities and adds none",
          caps.get("drop") == ["ALL"] and not caps.get("add"), str(caps))
    res = c.get("resources", {})
    for kind in ("requests", "limits"):
        check(f"{where}: {kind} for cpu and memory",
              {"cpu", "memory"} <= set(res.get(kind, {})), str(res.get(kind)))
    check(f"{where}: no root user override",
          sc.get("runAsUser", 1) != 0 and sc.get("runAsNonRoot", True) is not False)
    if main:
        live = c.get("livenessProbe", {}).get("httpGet", {})
        ready = c.get("readinessProbe", {}).get("httpGet", {})
        check(f"{where}: liveness probe on /healthz", live.get("path") == "/healthz", str(live))
        check(f"{where}: readiness probe on /readyz", ready.get("path") == "/readyz", str(ready))
        ports = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
        for probe in (live, ready):
            check(f"{where}: probe port {probe.get('port')} is a container port",
                  probe.get("port") in ports or probe.get("port") in ports.values())


def check_workload(binary, d):
    name = d["metadata"]["name"]
    spec = d["spec"]["template"]["spec"]
    meta = d["spec"]["template"]["metadata"]
    check(f"{name}: selector matches the pod labels",
          selects(d["spec"]["selector"], meta.get("labels", {})))
    psc = spec.get("securityContext", {})
    check(f"{name}: runAsNonRoot", psc.get("runAsNonRoot") is True)
    check(f"{name}: runs as a non-zero UID", isinstance(psc.get("runAsUser"), int)
          and psc["runAsUser"] > 0, str(psc.get("runAsUser")))
    check(f"{name}: seccomp RuntimeDefault",
          psc.get("seccompProfile", {}).get("type") == "RuntimeDefault")
    check(f"{name}: no service-account token mounted",
          spec.get("automountServiceAccountToken") is False)
    for host in ("hostNetwork", "hostPID", "hostIPC"):
        check(f"{name}: no {host}", not spec.get(host, False))
    check(f"{name}: no hostPath volumes",
          not any("hostPath" in v for v in spec.get("volumes", [])))
    for v in spec.get("volumes", []):
        if "secret" in v:
            mode = v["secret"].get("defaultMode", 0o644)
            check(f"{name}: secret volume {v['name']} readable by its owner only",
                  mode & 0o077 == 0, oct(mode))
    ann = meta.get("annotations", {})
    check(f"{name}: Prometheus scrape annotations",
          ann.get("prometheus.io/scrape") == "true" and ann.get("prometheus.io/path") == "/metrics")
    ports = [p["containerPort"] for c in spec["containers"] for p in c.get("ports", [])]
    check(f"{name}: prometheus.io/port is a container port",
          int(ann.get("prometheus.io/port", 0)) in ports)
    for c in spec.get("initContainers", []):
        check_container(f"{name}/{c['name']} (init)", c, main=False)
    for c in spec["containers"]:
        check_container(f"{name}/{c['name']}", c, main=True)
    for c in spec.get("initContainers", []) + spec["containers"]:
        args = c.get("args", [])
        command = [a for a in args[:2] if not a.startswith("-")]
        known = binary_flags(binary, *command)
        unknown = args_flags(args) - known
        check(f"{name}/{c['name']}: `drawbridge {' '.join(command)}` knows every flag",
              not unknown, f"unknown: {sorted(unknown)}")


def check_network_policies(docs, pods):
    policies = [d for d in docs if d["kind"] == "NetworkPolicy"]
    default_deny = [p for p in policies
                    if p["spec"].get("podSelector") == {}
                    and set(p["spec"].get("policyTypes", [])) == {"Ingress", "Egress"}
                    and not p["spec"].get("ingress") and not p["spec"].get("egress")]
    check("a default-deny NetworkPolicy for ingress and egress", len(default_deny) == 1)
    for p in policies:
        name = p["metadata"]["name"]
        for rule in p["spec"].get("egress", []):
            check(f"policy {name}: every egress rule names its ports", bool(rule.get("ports")),
                  str(rule))
            for peer in rule.get("to", []):
                block = peer.get("ipBlock", {}).get("cidr")
                if block:
                    check(f"policy {name}: egress to {block} is not the whole internet",
                          ipaddress.ip_network(block).prefixlen >= 8)
            check(f"policy {name}: every egress rule names its peers", bool(rule.get("to")),
                  str(rule))
        for rule in p["spec"].get("ingress", []):
            check(f"policy {name}: every ingress rule names its ports", bool(rule.get("ports")),
                  str(rule))
    for pod_name, labels in pods.items():
        egress = [r for p in policies if selects(p["spec"].get("podSelector"), labels)
                  for r in p["spec"].get("egress", [])]
        ports = {pt["port"] for r in egress for pt in r.get("ports", [])}
        check(f"{pod_name}: egress allowed only on the ports it needs",
              ports <= {53, 5432, 8443, 8444, 443}, str(sorted(ports)))
    server_pol = [p for p in policies
                  if selects(p["spec"]["podSelector"], pods.get("drawbridge-server", {}))
                  and p["spec"]["podSelector"]]
    ingress_ports = {pt["port"] for p in server_pol for r in p["spec"].get("ingress", [])
                     for pt in r.get("ports", [])}
    check("server: ingress on 8443 (gRPC), 8444 (lanes), 9464 (metrics) only",
          ingress_ports == {8443, 8444, 9464}, str(sorted(ingress_ports)))


def main():
    binary = sys.argv[1]
    root = sys.argv[2] if len(sys.argv) > 2 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "..", "deploy", "kubernetes")
    _, docs = load_resources(root)
    kinds = [d["kind"] for d in docs]
    check("namespace enforces the restricted Pod Security profile",
          any(d["kind"] == "Namespace" and d["metadata"].get("labels", {}).get(
              "pod-security.kubernetes.io/enforce") == "restricted" for d in docs))
    workloads = [d for d in docs if d["kind"] == "Deployment"]
    check("a server and an agent Deployment",
          {d["metadata"]["name"] for d in workloads} == {"drawbridge-server", "drawbridge-agent"})
    pods = {}
    for d in workloads:
        pods[d["metadata"]["name"]] = d["spec"]["template"]["metadata"]["labels"]
        check_workload(binary, d)
    server = next(d for d in workloads if d["metadata"]["name"] == "drawbridge-server")
    check("server: 3 replicas", server["spec"].get("replicas") == 3)
    pdbs = [d for d in docs if d["kind"] == "PodDisruptionBudget"
            and selects(d["spec"]["selector"], pods["drawbridge-server"])]
    check("server: a PodDisruptionBudget keeps 2 of 3 up",
          len(pdbs) == 1 and (pdbs[0]["spec"].get("minAvailable") == 2
                              or pdbs[0]["spec"].get("maxUnavailable") == 1))
    services = [d for d in docs if d["kind"] == "Service"
                and selects({"matchLabels": d["spec"]["selector"]}, pods["drawbridge-server"])]
    check("server: a Service in front of the replicas", len(services) == 1)
    check_network_policies(docs, pods)
    check("every resource is namespaced in drawbridge",
          all(d["metadata"].get("namespace") == "drawbridge"
              for d in docs if d["kind"] != "Namespace"), str(kinds))
    print(f"{PASSED} passed, {FAILED} failed")
    return 1 if FAILED else 0


if __name__ == "__main__":
    sys.exit(main())

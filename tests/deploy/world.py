"""One test's world: images in the real registry, a GitOps working copy with a bare remote, a
customer's code folder, and a writer of deployment files."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.deploy.support import ROLE, git, gitops_repo, push_image, tree
from veil.deploy.apply import Deployed, deploy
from veil.deploy.gitops import GitOpsRepo
from veil.deploy.images import RegistryImages
from veil.deploy.load import load_deployment

CODE = "import os\nURL = os.environ['MODEL_URL']\nT = os.getenv('THRESHOLD', '0.5')\n"
IMAGE_ENV = {"VEIL_ENTRYPOINT": "model:predict", "LOG_LEVEL": "INFO"}


@dataclass
class World:
    tmp: Path
    registry: str
    repo: Path
    remote: Path | None
    ns: str = field(default_factory=lambda: uuid.uuid4().hex[:8])

    def image(self, tag: str, *, name: str = "fraud", env: dict[str, str] | None = None,
              role: str | None = ROLE, content: bytes = b"") -> tuple[str, str]:
        """Push an image; (REGISTRY/REPO:TAG, digest)."""
        ref = f"{self.registry}/{self.ns}/{name}:{tag}"
        labels = {"io.veil.platform.aws-role-arn": role} if role else {}
        digest = push_image(ref, env=IMAGE_ENV if env is None else env, labels=labels,
                            content=content or f"{ref}{uuid.uuid4()}".encode())
        return ref, digest

    def code(self, text: str = CODE) -> str:
        folder = self.tmp / "code"
        folder.mkdir(exist_ok=True)
        (folder / "model.py").write_text(text)
        return "./code"

    def deployment(self, name: str = "deployment.yaml", **fields: Any) -> Path:
        doc: dict[str, Any] = {"team": "ml", "app": "fraud-v1", "chart": {"wrapper": "flask"},
                               "env": {"MODEL_URL": "s3://models/fraud"}}
        doc.update(fields)
        path = self.tmp / name
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        return path

    def deploy(self, path: Path) -> Deployed:
        with RegistryImages() as images:
            return deploy(load_deployment(path), GitOpsRepo(self.repo), images)

    def snapshot(self) -> tuple[str, dict[str, bytes], str | None]:
        """HEAD, every file, and the remote's head: 'the repository as it was'."""
        remote = git(self.remote, "rev-parse", "main").strip() if self.remote else None
        return git(self.repo, "rev-parse", "HEAD").strip(), tree(self.repo), remote

    def load(self, rel: str) -> Any:
        return yaml.safe_load((self.repo / rel).read_text())


def make_world(tmp: Path, registry: str, *, remote: bool = True) -> World:
    repo, bare = gitops_repo(tmp, remote=remote)
    return World(tmp, registry, repo, bare)


SUB_DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ .Chart.Name }}
spec:
  selector:
    matchLabels: {app: {{ .Chart.Name }}}
  template:
    metadata:
      labels: {app: {{ .Chart.Name }}}
    spec:
      serviceAccountName: {{ .Chart.Name }}
      containers:
        - name: main
          image: "{{ .Values.image }}"
"""
SUB_ACCOUNT = """\
apiVersion: v1
kind: ServiceAccount
metadata:
  name: {{ .Chart.Name }}
  {{- with .Values.serviceAccount.annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
"""


def mesh_like_chart(folder: Path, images: dict[str, str]) -> Path:
    """An umbrella chart with one subchart per service, each pulling `images[service]` and
    with its own ServiceAccount — the shape of the chart `veil apply -f mesh.yaml` writes."""
    (folder / "templates").mkdir(parents=True)
    (folder / "templates" / "NOTES.txt").write_text("mesh\n")
    (folder / "Chart.yaml").write_text(
        "apiVersion: v2\nname: mesh\nversion: 0.1.0\ndependencies:\n" + "".join(
            f"  - name: {s}\n    version: 0.1.0\n" for s in images))
    values = {}
    for service, image in images.items():
        sub = folder / "charts" / service
        (sub / "templates").mkdir(parents=True)
        (sub / "Chart.yaml").write_text(f"apiVersion: v2\nname: {service}\nversion: 0.1.0\n")
        (sub / "values.yaml").write_text(yaml.safe_dump(
            {"image": image, "serviceAccount": {"annotations": {}}}))
        (sub / "templates" / "deployment.yaml").write_text(SUB_DEPLOYMENT)
        (sub / "templates" / "serviceaccount.yaml").write_text(SUB_ACCOUNT)
        values[service] = {"image": image, "serviceAccount": {"annotations": {}}}
    (folder / "values.yaml").write_text(yaml.safe_dump(values))
    return folder

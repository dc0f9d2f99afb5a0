"""docker/: the compose file describes the CeleryExecutor deployment the README promises."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

DOCKER = Path(__file__).resolve().parents[2] / "docker"


def compose() -> dict:
    return yaml.safe_load((DOCKER / "docker-compose.yml").read_text())


def effective_env(service: dict) -> dict:
    """What a service's processes see: its env_file's settings, then its environment."""
    from dev.deployment import deployment_settings

    env = {}
    for name in [service["env_file"]] if isinstance(service.get("env_file"), str) else service.get("env_file", []):
        env.update(deployment_settings(DOCKER / name))
    return {**env, **service.get("environment", {})}


def test_services_of_a_celery_deployment_are_there():
    services = compose()["services"]
    for name in ("postgres", "redis", "airflow-init", "airflow-api-server", "airflow-scheduler",
                 "airflow-dag-processor", "airflow-triggerer", "airflow-worker", "gee-emulator"):  # fmt: skip
        assert name in services, name
    assert services["airflow-worker"]["deploy"]["replicas"] >= 2
    assert effective_env(services["airflow-scheduler"])["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert services["gee-emulator"]["profiles"] == ["emulator"]
    # it listens on the compose network: only with tokens checked (its admin routes serve its key)
    command = services["gee-emulator"]["command"].split()
    assert "--allow-remote" in command and "--require-auth" in command and "--admin-token-file" in command


def test_images_are_pinned():
    services = compose()["services"]
    for name, service in services.items():
        image = service.get("image")
        assert image and re.fullmatch(r"[\w./-]+:\d+(\.\d+)+", image), (name, image)
    assert re.search(r"^FROM apache/airflow:3\.3\.\d+-python3\.11$", (DOCKER / "Dockerfile").read_text(), re.M)
    assert "-c /opt/provider/requirements/constraints.txt" in (DOCKER / "Dockerfile").read_text()


def test_init_creates_the_pool_with_include_deferred():
    init = compose()["services"]["airflow-init"]
    script = "\n".join(init["command"])
    assert "airflow db migrate" in script
    assert re.search(r"airflow pools set gee_tasks .* --include-deferred", script)
    for name in ("airflow-api-server", "airflow-scheduler", "airflow-triggerer", "airflow-worker"):
        depends = compose()["services"][name]["depends_on"]
        assert depends["airflow-init"]["condition"] == "service_completed_successfully"


def test_large_xcoms_go_to_a_volume_every_airflow_service_mounts():
    services = compose()["services"]
    env = effective_env(services["airflow-worker"])
    assert env["AIRFLOW__CORE__XCOM_BACKEND"] == "airflow.providers.common.io.xcom.backend.XComObjectStorageBackend"
    assert int(env["AIRFLOW__COMMON_IO__XCOM_OBJECTSTORAGE_THRESHOLD"]) > 0  # below 0 nothing leaves the database
    path = env["AIRFLOW__COMMON_IO__XCOM_OBJECTSTORAGE_PATH"].removeprefix("file://")
    for name, service in services.items():
        if name.startswith("airflow-"):  # the api-server deletes them, workers write and read them
            mounts = [v.split(":")[1] for v in service.get("volumes", [])]
            assert any(path.startswith(m.rstrip("/") + "/") for m in mounts), (name, mounts)


def test_every_path_the_image_copies_exists():
    # the image is built from the repository: a moved package must move in the Dockerfile too
    root = DOCKER.parent
    for line in (DOCKER / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY"):
            sources = [w for w in line.split()[1:-1] if not w.startswith("--")]
            for source in sources:
                assert (root / source).exists(), source
    text = (DOCKER / "Dockerfile").read_text()
    assert "/opt/provider/packages/gee-emulator" in text and "/opt/provider[stitch,report,emulator]" in text


def test_operators_defer_by_default_in_the_deployment():
    env = effective_env(compose()["services"]["airflow-worker"])
    assert env["AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE"] == "True"


def test_the_compose_file_runs_with_the_settings_the_deployment_test_runs_with(tmp_path):
    """One source: docker/deployment.env. Every Airflow service reads it and overrides none of it;
    the system test's stack (AirflowStack.celery) starts with exactly those values."""
    from dev.airflow_stack import AirflowStack
    from dev.deployment import deployment_settings

    tested = deployment_settings()
    assert tested["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    for name, service in compose()["services"].items():
        if name.startswith("airflow-"):
            assert service["env_file"] == "deployment.env", name
            assert not set(service.get("environment", {})) & set(tested), (
                name,
                set(service["environment"]) & set(tested),
            )
    stack = AirflowStack.celery(tmp_path / "home", tmp_path / "dags", database_url="postgresql+psycopg2://u@h/db",
                                broker_url="redis://h:6379/5")  # fmt: skip
    assert {k: stack.env[k] for k in tested} == tested
    assert stack.env["AIRFLOW__CELERY__RESULT_BACKEND"] == "db+postgresql+psycopg2://u@h/db"
    assert stack.processes == {"scheduler": 2, "dag-processor": 1, "triggerer": 2, "worker": 2}


def test_the_jwt_secret_is_required_and_the_api_server_binds_loopback():
    env = compose()["x-airflow"]["environment"]
    secret = env["AIRFLOW__API_AUTH__JWT_SECRET"]
    # ${VAR:?message}: compose refuses to start without it, no published fallback
    assert re.fullmatch(r"\$\{AIRFLOW_JWT_SECRET:\?[^}]+\}", secret), secret
    (port,) = compose()["services"]["airflow-api-server"]["ports"]
    assert port == "${AIRFLOW_API_BIND:-127.0.0.1}:8080:8080"


def test_the_deployment_id_and_the_record_secret_are_required():
    # two copies of the compose file share the execution API URL the default deployment id comes from:
    # each must name itself; merge records are signed with a secret of the deployment's own
    env = compose()["x-airflow"]["environment"]
    assert re.fullmatch(r"\$\{GEE_DEPLOYMENT_ID:\?[^}]+\}", env["AIRFLOW__GEE__DEPLOYMENT_ID"])
    assert re.fullmatch(r"\$\{GEE_RECORD_SECRET:\?[^}]+\}", env["AIRFLOW__GEE__RECORD_SECRET"])

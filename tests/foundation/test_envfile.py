import base64

from devstack.envfile import render


def test_env_file_gets_a_random_password_for_each_empty_password_and_keeps_the_rest():
    example = "# comment PG_X_PASSWORD=\nPG_PORT=5432\nPG_ADMIN_PASSWORD=\nPG_READER_PASSWORD=given\n"
    first, second = render(example), render(example)
    lines = dict(
        line.split("=", 1) for line in first.splitlines() if "=" in line and not line.startswith("#")
    )
    assert lines["PG_PORT"] == "5432"
    assert lines["PG_READER_PASSWORD"] == "given"
    assert len(lines["PG_ADMIN_PASSWORD"]) >= 20
    assert first != second, "passwords must be random"
    assert first.splitlines()[0] == "# comment PG_X_PASSWORD="


def test_env_file_gets_airflow_keys_for_compose():
    lines = dict(line.split("=", 1) for line in render("AF_JWT_SECRET=\nAF_FERNET_KEY=\n").splitlines())
    assert len(lines["AF_JWT_SECRET"]) >= 40
    assert len(base64.urlsafe_b64decode(lines["AF_FERNET_KEY"])) == 32, "a Fernet key is 32 bytes"

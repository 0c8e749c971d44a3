"""rexec.client.web against a real web node and compute node: publish, call, batch, pools."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest

from rexec.client import ServiceError, WebClient, WebError, login
from tests.client.conftest import ADMIN_PASSWORD

MODEL = "model <- lm(mpg ~ wt + hp, data = mtcars)"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def rscript(code: str) -> str:
    """What a separate R (Rscript) prints for ``code``."""
    done = subprocess.run(
        ["Rscript", "--vanilla", "-e", code], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def web(services_web) -> Iterator[WebClient]:
    """The admin, logged in (an Owner: publishes and consumes)."""
    with login(services_web.url, "admin", ADMIN_PASSWORD) as client:
        yield client


def test_model_in_init_code_predicts_what_r_predicts(web: WebClient) -> None:
    name = unique("mpg")
    info = web.publish_service(
        name,
        "mpg <- unname(predict(model, newdata = data.frame(wt = wt, hp = hp)))",
        version="1.0",
        init_code=MODEL,
        inputs={"wt": "numeric", "hp": "numeric"},
        outputs={"mpg": "numeric"},
        description="fuel use from weight and power",
    )
    assert (info.name, info.version) == (name, "1.0")
    assert info.description == "fuel use from weight and power"
    assert info.inputs == {"wt": "numeric", "hp": "numeric"}
    assert info.outputs == {"mpg": "numeric"}
    assert info.owner == "admin" and info.init_code == MODEL

    expected = rscript(
        f"{MODEL}; p <- predict(model, data.frame(wt = c(2.5, 3.2), hp = c(110, 150)));"
        " cat(sprintf('%.17g', p), sep = '\\n')"
    )
    mpg = web.service(name, "1.0")
    one = mpg(wt=2.5, hp=110)
    assert one.success and one.error_message is None
    assert one.outputs["mpg"] == pytest.approx(float(expected.split()[0]), rel=1e-12)
    both = mpg.call({"wt": np.array([2.5, 3.2]), "hp": [110, 150]})
    assert both.outputs["mpg"] == pytest.approx([float(v) for v in expected.split()], rel=1e-12)


def test_data_frames_in_and_out(web: WebClient) -> None:
    name = unique("frames")
    web.publish_service(
        name,
        "out <- data.frame(a = df$a * 2, b = toupper(df$b), missing = is.na(df$a))\n"
        "count <- nrow(df)",
        version="1",
        inputs=[("df", "data.frame")],
        outputs=["out:data.frame", "count:integer"],
    )
    frame = pd.DataFrame({"a": [1.5, np.nan, 3.0], "b": ["x", "y", None]})
    result = web.service(name, "1")(df=frame)
    assert result.outputs["count"] == 3
    out = result.outputs["out"]
    assert isinstance(out, pd.DataFrame)
    expected = pd.DataFrame(
        {"a": [3.0, np.nan, 6.0], "b": ["X", "Y", None], "missing": [False, True, False]}
    )
    pd.testing.assert_frame_equal(out, expected)
    rows = web.service(name, "1")(df=[{"a": 1, "b": "p"}, {"a": 2, "b": "q"}])
    assert rows.outputs["out"]["b"].tolist() == ["P", "Q"]


def test_matrix_vector_nas_and_output_files(web: WebClient) -> None:
    name = unique("shapes")
    web.publish_service(
        name,
        "m <- matrix(as.numeric(seq_len(6)), nrow = 2)\n"
        "nas <- sum(is.na(x))\n"
        "back <- x\n"
        "writeBin(as.raw(1:10), 'out.bin')\n"
        "cat('console line\\n')",
        version="1",
        inputs={"x": "vector"},
        outputs={"m": "matrix", "nas": "integer", "back": "vector"},
        output_files=["out.bin"],
    )
    result = web.service(name, "1")(x=np.array([1.0, np.nan, 3.0]))
    assert isinstance(result.outputs["m"], np.ndarray)
    np.testing.assert_array_equal(result.outputs["m"], [[1.0, 3.0, 5.0], [2.0, 4.0, 6.0]])
    assert result.outputs["nas"] == 1
    assert result.outputs["back"] == [1.0, None, 3.0]
    assert result.files == {"out.bin": bytes(range(1, 11))}
    assert "console line" in result.console
    in_batch = web.service(name, "1").batch([{"x": [1, 2]}, {"x": [None, 4]}])
    assert [r.outputs["nas"] for r in in_batch] == [0, 1]
    assert [r.files for r in in_batch] == [{"out.bin": bytes(range(1, 11))}] * 2


def test_model_published_as_a_file_from_r(web: WebClient, tmp_path) -> None:
    saved = tmp_path / "model.rds"
    expected = rscript(
        f"m <- lm(mpg ~ wt, mtcars); saveRDS(m, '{saved}');"
        " cat(sprintf('%.17g', predict(m, data.frame(wt = 3))))"
    )
    name = unique("rds")
    web.publish_service(
        name,
        "mpg <- unname(predict(model, data.frame(wt = wt)))",
        version="1",
        model=saved,
        inputs={"wt": "numeric"},
        outputs={"mpg": "numeric"},
    )
    assert web.service(name, "1")(wt=3).outputs["mpg"] == pytest.approx(float(expected))


def test_r_error_raises_service_error_with_r_message(web: WebClient) -> None:
    name = unique("fails")
    web.publish_service(
        name,
        "cat('checking', x, '\\n')\nif (x < 0) stop('x must not be negative')\ny <- sqrt(x)",
        version="1",
        inputs={"x": "numeric"},
        outputs={"y": "numeric"},
    )
    service = web.service(name, "1")
    assert service(x=16).outputs["y"] == 4.0
    with pytest.raises(ServiceError) as caught:
        service(x=-1)
    assert "x must not be negative" in caught.value.message
    assert "checking -1" in caught.value.console
    assert caught.value.result is not None and not caught.value.result.success


def test_bad_inputs_are_400_and_unknown_services_404(web: WebClient) -> None:
    name = unique("typed")
    web.publish_service(
        name, "y <- x + 1", version="1", inputs={"x": "numeric"}, outputs={"y": "numeric"}
    )
    service = web.service(name, "1")
    with pytest.raises(WebError) as wrong:
        service(x="not a number")
    assert wrong.value.status == 400 and "x" in wrong.value.message
    with pytest.raises(WebError) as missing:
        service()
    assert missing.value.status == 400 and "x" in missing.value.message
    with pytest.raises(WebError) as unknown:
        service(x=1, z=2)
    assert unknown.value.status == 400 and "z" in unknown.value.message
    with pytest.raises(WebError) as absent:
        web.service(name, "no-such-version")(x=1)
    assert absent.value.status == 404
    with pytest.raises(WebError) as taken:
        web.publish_service(name, "y <- x", version="1")
    assert taken.value.status == 409


def test_batch_returns_every_result_in_order(web: WebClient) -> None:
    name = unique("batch")
    web.publish_service(
        name,
        "Sys.sleep(0.05)\nif (x == 13) stop('unlucky')\ny <- x * 10\nlabel <- paste0('n', x)",
        version="1",
        inputs={"x": "integer"},
        outputs={"y": "numeric", "label": "character"},
    )
    service = web.service(name, "1")
    seen: list[tuple[int, int, str]] = []
    records = [{"x": i} for i in range(20)]
    results = service.batch(records, parallel_count=3, progress=lambda *a: seen.append(a))
    assert len(results) == 20
    assert [r.index for r in results] == list(range(20))
    for i, result in enumerate(results):
        if i == 13:
            assert not result.success and "unlucky" in (result.error_message or "")
        else:
            assert result.success
            assert result.outputs == {"y": i * 10.0, "label": f"n{i}"}
    assert seen and seen[-1] == (20, 20, "complete")
    assert [c for c, _, _ in seen] == sorted(c for c, _, _ in seen)

    all_failed = service.batch([{"x": 13}, {"x": 13}])  # the batch is "failed": no raise
    assert [(r.success, r.index) for r in all_failed] == [(False, 0), (False, 1)]
    assert all("unlucky" in (r.error_message or "") for r in all_failed)

    frame = pd.DataFrame({"x": [1, 2, 3]})
    again = service.batch(frame, progress=True)
    assert [r.outputs["y"] for r in again] == [10.0, 20.0, 30.0]
    assert len(service.batches()) >= 2


def test_default_version_update_swagger_pool_and_delete(web: WebClient) -> None:
    name = unique("lifecycle")
    first = web.publish_service(
        name, "y <- x + 1", inputs={"x": "numeric"}, outputs={"y": "numeric"}, is_default=True
    )
    assert first.version and first.is_default  # a server-made GUID
    web.publish_service(
        name, "y <- x + 2", version="v2", inputs={"x": "numeric"}, outputs={"y": "numeric"}
    )
    assert sorted(s.version for s in web.services(name)) == sorted([first.version, "v2"])
    assert {(s.name, s.version) for s in web.services()} >= {(name, "v2")}
    assert web.service(name)(x=1).outputs["y"] == 2.0
    assert web.service(name, "v2")(x=1).outputs["y"] == 3.0
    assert web.service_info(name).version == first.version

    updated = web.update_service(name, "v2", description="adds two", is_default=True)
    assert updated.description == "adds two" and updated.is_default
    assert web.service(name)(x=1).outputs["y"] == 3.0

    swagger = web.service(name, "v2").swagger()
    assert swagger["openapi"].startswith("3.")
    assert any(name in path for path in swagger["paths"])

    web.set_pool(name, "v2", 1, 2)
    assert web.service_info(name, "v2").pool == {"initialPoolSize": 1, "maxPoolSize": 2}
    nodes = web.pool(name, "v2")
    assert nodes and {"node", "status", "idle", "busy", "max"} <= set(nodes[0])
    assert nodes[0]["max"] == 2
    web.delete_pool(name, "v2")
    assert web.service_info(name, "v2").pool == {"initialPoolSize": 1, "maxPoolSize": 4}

    web.delete_service(name, "v2")
    with pytest.raises(WebError) as gone:
        web.service_info(name, "v2")
    assert gone.value.status == 404
    web.delete_service(name, first.version)
    try:
        left = web.services(name)
    except WebError as exc:  # a name without versions may be unknown altogether
        assert exc.status == 404
        left = []
    assert left == []


def test_login_errors_and_tokens(services_web) -> None:
    with pytest.raises(WebError) as refused:
        login(services_web.url, "admin", "wrong password")
    assert refused.value.status == 401
    with WebClient(services_web.url) as anonymous, pytest.raises(WebError) as denied:
        anonymous.services()
    assert denied.value.status == 401
    with login(services_web.url, "admin", ADMIN_PASSWORD) as client:
        with WebClient(services_web.url, token=client.token) as by_token:
            assert isinstance(by_token.services(), list)
        client.token = "expired"  # refreshed with the refresh token
        assert isinstance(client.services(), list)
        assert client.token != "expired"


def test_roles_readers_consume_contributors_own_their_names(web: WebClient, services_web) -> None:
    services_web.user("ann", "Contributor").close()
    services_web.user("rita", "Reader").close()
    name = unique("roles")
    with login(services_web.url, "ann", "password-123") as ann:
        ann.publish_service(
            name, "y <- x * 3L", version="1", inputs={"x": "integer"}, outputs={"y": "integer"}
        )
        assert ann.service_info(name, "1").owner == "ann"
    with login(services_web.url, "rita", "password-123") as rita:
        assert rita.service(name, "1")(x=2).outputs["y"] == 6
        with pytest.raises(WebError) as forbidden:
            rita.publish_service(unique("mine"), "y <- 1")
        assert forbidden.value.status == 403
        with pytest.raises(WebError) as not_hers:
            rita.delete_service(name, "1")
        assert not_hers.value.status == 403
    web.delete_service(name, "1")  # an Owner may

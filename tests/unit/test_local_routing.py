"""picflow_cli.local.routing: the moto server's host -> service lookup is made once per host and
answers what moto's own lookup answers."""

from __future__ import annotations

from unittest import mock

from moto.moto_server.werkzeug_app import DomainDispatcherApplication
from picflow_cli.local import routing


def test_each_host_is_looked_up_once_with_moto_s_answer() -> None:
    original = DomainDispatcherApplication.get_backend_for_host
    app = DomainDispatcherApplication(create_app=mock.Mock())
    hosts = [
        "dynamodb.us-east-1.amazonaws.com",
        "s3.us-east-1.amazonaws.com",
        "states.us-east-1.amazonaws.com",
    ]
    expected = [original(app, host) for host in hosts]
    assert expected == ["dynamodb", "s3", "stepfunctions"]
    with mock.patch.object(
        DomainDispatcherApplication, "get_backend_for_host", autospec=True, side_effect=original
    ) as spy:
        undo = routing.install()
        try:
            answers = [app.get_backend_for_host(host) for host in hosts + hosts]
        finally:
            undo()
        assert answers == expected + expected
        assert [call.args[1] for call in spy.call_args_list] == hosts
    assert DomainDispatcherApplication.get_backend_for_host is original

import pytest

from utils.errors import UserError, run_cli, warn


def _exit_code(main, capsys):
    with pytest.raises(SystemExit) as info:
        run_cli(main)
    return info.value.code, capsys.readouterr()


def test_user_error_prints_one_line_and_exits_2(capsys):
    def main(argv):
        raise UserError("--data_root: folder 'x' does not exist")

    code, out = _exit_code(main, capsys)
    assert code == 2
    assert out.err == "error: --data_root: folder 'x' does not exist\n"
    assert "Traceback" not in out.err


def test_keyboard_interrupt_exits_130(capsys):
    def main(argv):
        raise KeyboardInterrupt

    code, _ = _exit_code(main, capsys)
    assert code == 130


def test_return_value_becomes_exit_code(capsys):
    assert _exit_code(lambda argv: None, capsys)[0] == 0
    assert _exit_code(lambda argv: 3, capsys)[0] == 3


def test_bugs_keep_their_traceback():
    def main(argv):
        raise ValueError("bug")

    with pytest.raises(ValueError):
        run_cli(main)


def test_warn_once_prints_a_message_only_once(capsys):
    warn("unique message for test_warn_once")
    warn("unique message for test_warn_once")
    warn("repeatable message", once=False)
    warn("repeatable message", once=False)
    err = capsys.readouterr().err
    assert err.count("warning: unique message for test_warn_once\n") == 1
    assert err.count("warning: repeatable message\n") == 2

from rexec.cli.main import app

app()

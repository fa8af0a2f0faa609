"""Control requests carried out by the running daemon (docs/PROTOCOL.md §14):
controller.py takes request files and writes replies, verbs.py says what each verb does
to the agent groups."""

"""The episode: the LangGraph graph, its prompts and parsing, credit and the run log."""

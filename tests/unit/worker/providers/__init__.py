"""worker/providers/: the OpenAI and Anthropic providers, the scripted model, the model catalog."""

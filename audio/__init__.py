"""dalaba's audio library: text to spoken text, speech, mastered clips and programs."""

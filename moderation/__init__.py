"""Sensitive-word moderation as a library: the text fold, the keyword matcher, the live keyword set and its
topic. The worker moderates with it; search and retroactive rescans (the read side) fold and match the same
way without faust."""

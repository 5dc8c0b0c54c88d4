"""Word lists for RULER-style keys (adjective-noun pairs) and word values.

190 adjectives x 258 nouns = 49,020 keys. Keys are split by a hash into two disjoint halves
(`side`): questions use one half, distractor needles of a shared haystack the other, so a haystack
built once per length and seed never holds a key that a sample asks about.
"""

from __future__ import annotations

import hashlib

ADJECTIVES = tuple("""
able absent acid adorable afraid agile airy alert amber ancient angry arctic ashen awake bitter
black bland blue bold brave brief bright brisk broad bronze brown busy calm careful cheap cheerful
chilly civil clean clever cloudy coarse cold cosmic crisp crooked cruel curious curly damp dark dear
deep dense dizzy dry dull dusty eager early earthy easy elder empty equal faint fair famous fancy
fast fierce fine firm flat fluffy fond foolish fragile free fresh friendly frosty funny gentle giant
gifted glad gloomy golden grand grateful gray great green grim gusty happy hardy harsh hasty heavy
hidden hollow honest huge humble hungry icy idle jolly keen kind large lazy lean light little lively
lonely loud lucky mellow merry mighty mild misty modern modest muddy narrow neat nervous noble noisy
odd old orange pale patient plain polite proud purple quick quiet rapid rare red rich rough round
royal rusty sad salty scarlet sharp shiny short silent silky silver simple sleepy slim slow small
smooth soft solid sour spicy steady steep sticky stormy strange strict strong sunny super sweet swift
tall tame tender thick thin tidy tiny tired tough tricky vast violet
""".split())

NOUNS = tuple("""
acorn actor airport album anchor angle ant apple apron arch arrow attic badge bag bakery balloon
bamboo banana band banjo barn barrel basket bat beach beacon bean bear beard bed bee bell belt bench
berry bicycle bird blanket blossom boat bonnet book boot bottle bowl box bracelet branch bread brick
bridge brook broom brush bubble bucket bull butter button cabin cable cactus cake camel camera candle
canoe canyon cap car card carpet carrot castle cat cave cello chain chair chalk cheese cherry chest
chimney circle clock cloud coat coconut coin comet compass cookie copper coral cotton cow crab crane
crayon creek crown cup curtain daisy desert desk diamond dolphin door dragon drum duck eagle engine
falcon feather fence fern ferry fiddle field finch flag flute forest fork fountain fox frog garden
garlic gate gem ghost giraffe glacier glove goat goose grape guitar hammer harbor harp hat hawk heron
hill honey horse island jacket jar jelly kettle key kite ladder lake lamp lantern lemon lily lion
lizard lobster locket magnet mango map maple marble meadow melon mirror mitten monkey moon moss
mountain mouse mushroom needle nest oak ocean olive onion orchard otter owl oyster paddle palace panda
parrot peach pear pearl pebble pencil penguin pepper piano pillow pine planet plum pond poppy potato
pumpkin puzzle quilt rabbit radish raven ribbon river robin rocket rose saddle sail salmon sandal
scarf shell ship shovel sparrow spider spoon squirrel star stone stove swan sword table teapot tiger
tomato tower train tulip turtle umbrella valley violin wagon walnut whale wheel willow window wolf
""".split())


def side(text: str) -> int:
    """0 or 1: which half of the key (or value) space `text` belongs to (a fixed hash)."""
    return hashlib.sha256(text.encode("utf-8")).digest()[0] & 1

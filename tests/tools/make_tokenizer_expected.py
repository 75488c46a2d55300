"""Regenerate the tokenizer parity corpus and the ids open_clip gives for it.

Usage (from the repository root, with the ``test`` extra installed)::

    python tests/tools/make_tokenizer_expected.py

It writes two files that ``tests/test_tokenizer.py`` reads:

``tests/data/tokenizer_corpus.jsonl``
    One JSON string per line, so newlines, odd whitespace and lone surrogates survive. Lines that
    hold control, separator or unassigned characters are written with ASCII escapes; the rest
    are written as UTF-8 so that a reader can see them.
``tests/data/tokenizer_expected.npz``
    ``ids`` (``[N, 77] int32``, from ``open_clip.tokenize``), ``lengths`` (``[N] int32``, the
    number of ids of each text before framing and truncation), ``corpus_sha256`` and the versions
    of open_clip, ftfy and regex that produced them.

The corpus is built from hand-written lists and from a seeded random generator, so running the
script twice gives the same bytes. The committed files are the reference: rerun the script only
to extend the corpus or after a deliberate upgrade of open_clip or ftfy, and review the diff.
"""

from __future__ import annotations

import hashlib
import json
import random
import sys
import unicodedata
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[1] / "data"
CORPUS_PATH = DATA / "tokenizer_corpus.jsonl"
EXPECTED_PATH = DATA / "tokenizer_expected.npz"
SEED = 20240611
CONTEXT_LENGTH = 77

# ---------------------------------------------------------------------------------------------
# Hand-written material
# ---------------------------------------------------------------------------------------------

# fmt: off
QUERIES = [
    "a photo of a dog", "a photo of a cat sleeping on a sofa", "sunset over the ocean",
    "my daughter's birthday cake", "red car parked in the snow", "group photo at the wedding",
    "beach in summer with umbrellas", "mountains covered in fog", "a screenshot of a receipt",
    "whiteboard with handwriting", "fireworks at night", "Christmas tree with lights",
    "a bowl of ramen", "pizza margherita", "the Eiffel Tower at dusk", "Golden Gate Bridge",
    "kids playing football in the park", "selfie with sunglasses", "passport photo",
    "blurry picture of a bird", "black and white portrait of an old man",
    "close-up of a flower with a bee", "snowy forest trail", "rainbow after the storm",
    "a cup of coffee on a wooden table", "hiking boots by the tent", "baby's first steps",
    "graduation ceremony", "a map of the city", "documents scanned at an angle",
    "night sky with the milky way", "an empty train station", "crowd at a concert",
    "a cat in a cardboard box", "dog catching a frisbee", "old family photo, sepia",
    "Grandma's garden in June", "the view from the plane window", "tulips in Amsterdam",
    "street food market at night", "two horses in a field", "a bicycle leaning against a wall",
    "lighthouse on a cliff", "aurora borealis over a lake", "a plate of sushi",
    "ski slope with people", "book shelf full of books", "a handwritten recipe card",
    "waterfall in the jungle", "a toddler in a bath", "Halloween costumes", "paper lanterns",
    "a QR code on a poster", "photo of a photo", "meme with text", "diagram of a circuit",
    "X-ray of a hand", "microscope image of cells", "underwater coral reef",
    "an astronaut riding a horse",
]

SUBJECTS = [
    "dog", "cat", "puppy", "kitten", "horse", "cow", "bird", "parrot", "owl", "fox", "deer", "bear",
    "rabbit", "hamster", "goldfish", "turtle", "butterfly", "spider", "child", "baby", "man",
    "woman", "grandfather", "grandmother", "family", "couple", "bride", "runner", "cyclist",
    "surfer", "skier", "chef", "musician", "car", "truck", "bus", "tram", "train", "boat",
    "sailboat", "airplane", "helicopter", "bicycle", "motorbike", "tractor", "house", "castle",
    "church", "bridge", "tower", "skyscraper", "barn", "tent", "cabin", "lighthouse", "tree",
    "oak tree", "palm tree", "cactus", "rose", "sunflower", "tulip", "mushroom", "apple", "banana",
    "birthday cake", "sandwich", "salad", "soup", "ice cream", "croissant", "laptop", "phone",
    "camera", "guitar", "piano", "violin", "clock", "lamp", "chair", "sofa", "bed", "kite",
    "balloon", "snowman", "sandcastle", "statue", "fountain", "mural",
]

PLACES = [
    "on the beach", "in the snow", "in the rain", "at night", "at sunrise", "at sunset",
    "in the kitchen", "in the living room", "in the garden", "in the park", "in the forest",
    "in the desert", "on a mountain", "by the lake", "by the river", "in the city", "on the street",
    "at the zoo", "at the museum", "at school", "at the airport", "on a boat", "in a field",
    "under a tree", "in front of the house", "next to a fire", "in Paris", "in Tokyo",
    "in New York", "in Berlin", "in Lagos", "in São Paulo", "during the holidays", "in 2019",
    "last summer", "on Christmas eve", "in winter",
]

ADJECTIVES = [
    "", "", "", "small", "big", "red", "blue", "green", "yellow", "white", "black", "old", "young",
    "happy", "sleepy", "wet", "fluffy", "shiny", "broken", "vintage", "tiny", "enormous",
    "colourful", "colorful", "blurry", "dark", "bright",
]

TEMPLATES = [
    "a photo of a {adj} {subject} {place}", "{adj} {subject} {place}", "{subject} {place}",
    "picture of the {subject}", "A {adj} {subject}", "{subject}s {place}", "my {subject} {place}",
    "the {subject} and the {subject2}", "{subject} with a {subject2} {place}",
    "close-up of a {subject}", "{SUBJECT} {PLACE}", "{Subject}, {place}!",
    "where is the {subject}?", "{subject} {place} #{hashtag}", "photos of {subject}s from {year}",
]

PUNCTUATION_AND_NUMBERS = [
    "!", "?", ".", "...", "!!!", "?!", "…", "—", "–", "-", "--", "_", "__init__", "/", "\\", "(",
    ")", "[]", "{}", "<>", "<<>>", '"quoted"', "“curly quotes”", "‘single’", "«guillemets»",
    "„low quotes“", "#hashtag", "@mention", "a&b", "50%", "$12.99", "€5,00", "£3", "¥1000", "₹250",
    "₿0.5", "3.14159", "2.718281828459045", "1,000,000", "1.000.000", "1e10", "-42", "+7", "0",
    "00", "007", "1234567890", "12345678901234567890123456789012345678901234567890", "2023-07-14",
    "14/07/2023", "07.14.23", "12:30", "12:30:45.123", "10am", "3pm", "24/7",
    "IMG_20230714_153012.jpg", "DSC00042.JPG", "PXL_20231225_090000000.MP.jpg",
    "C:\\Users\\me\\Pictures\\photo.png", "/home/me/Pictures/2023/june/beach.heic",
    "https://example.com/photos?id=42&size=large#top", "me@example.com", "v1.2.3-rc.4", "½",
    "¼ cup", "²", "x²+y²=z²", "H₂O", "CO₂", "Ⅻ", "ⅻ", "Ⅳ", "①②③", "⑴", "٣٤٥", "۱۲۳", "१२३", "๑๒๓",
    "一二三", "〇", "𝟙𝟚𝟛", "１２３", "３．１４", "∞", "π", "√2", "≈", "≠", "±", "×", "÷", "°C", "25°", "5′11″",
    "→", "⇒", "★★★★☆", "♥", "♪♫", "©", "®", "™", "§1", "¶", "†", "•", "·", "¿qué?", "¡hola!", ":-)",
    ":)", ";-)", ":D", "XD", "<3", "^_^", "¯\\_(ツ)_/¯", "(╯°□°)╯︵ ┻━┻", "=^.^=", "o_O", "-_-",
    "T_T", "+1", "1+1=2", "a+b", "a-b", "a*b", "a/b", "a|b", "a~b", "a`b", "a^b", "a=b",
    "key=value", "[x]", "(1)", "no.1", "#1", "nº1", "1st", "2nd", "3rd", "4th", "21st century",
    "1990s", "'90s", "9/11", "100x100", "1920×1080", "4K", "8k", "f/1.8", "1/250s", "ISO 3200",
    "35mm", "50mm f1.4", "+/-", "&", "&&", "||",
]

EMOJI = [
    "😀", "😂", "🥲", "😍", "🤔", "🙈", "🐶", "🐱", "🦊", "🐻‍❄️", "🐈‍⬛", "🌅", "🌄", "🏖️", "🏔️", "🎂", "🎉", "🎄",
    "🍕", "🍣", "🍜", "☕", "🍷", "🚗", "✈️", "🚲", "⛵", "🏠", "🌳", "🌸", "🌈", "🔥", "❄️", "⭐", "❤️", "❤",
    "♥️", "💔", "❤️‍🔥", "❤️‍🩹", "👍", "👍🏻", "👍🏼", "👍🏽", "👍🏾", "👍🏿", "👋🏽", "🙏🏿", "👩‍💻", "👩🏽‍💻",
    "👨‍👩‍👧‍👦", "👨‍👨‍👧", "👩‍❤️‍👨", "🧑🏻‍🤝‍🧑🏿", "🏳️‍🌈", "🏳️‍⚧️", "🏴‍☠️", "🇫🇷", "🇯🇵", "🇺🇸", "🇩🇪", "🇧🇷",
    "🇮🇳", "🇳🇬", "🇺🇦", "🇪🇺", "🇺🇳", "🏴󠁧󠁢󠁥󠁮󠁧󠁿", "🏴󠁧󠁢󠁳󠁣󠁴󠁿", "1️⃣", "#️⃣", "*️⃣", "🔟", "☺︎", "☺️", "☺",
    "✌🏾", "🫶", "🫠", "🪿", "🧌", "🦩", "🥹", "👁️‍🗨️", "🤷‍♀️", "🤷🏼‍♂️", "🧘🏽‍♀️", "🏃‍➡️", "🙂‍↕️", "dog 🐶",
    "🐶 dog", "🐶🐶🐶", "cake🎂", "🎂party", "beach 🏖️ 2023", "I ❤️ NY", "🇫🇷🇯🇵🇺🇸", "🇫", "🇫🇷🇯", "👍🏻👍🏿",
    "🏻", "\u200d", "👨\u200d", "\u200d👩", "🏳\ufe0f", "\ufe0f",
]

ACCENTED = [
    "café", "naïve", "crème brûlée", "São Paulo", "Zürich", "Ångström", "Dvořák", "Łódź", "Kraków",
    "İstanbul", "ılık", "Straße", "STRASSE", "ẞ", "résumé", "façade", "jalapeño", "piñata", "Malmö",
    "Ærøskøbing", "Þingvellir", "Reykjavík", "Besançon", "Nguyễn", "Hà Nội", "Đà Nẵng", "phở",
    "Ελληνικά", "ΟΔΥΣΣΕΥΣ", "σίσυφος", "Čeština", "Škoda", "Ħamrun", "Ōsaka", "Māori", "Tūhoe",
    "ﬁsh", "ﬂower", "ﬀ", "Ǆ", "ǅ", "ǆ", "Ĳ", "ŉ", "ſ", "\u2126", "\u212a", "\u212b", "ŉ'", "ǰ", "ΐ",
    "ﬓ", "ᾼ", "ᾳ", "İi̇ıI",
]

CJK = [
    "猫", "狗", "一只猫在沙发上睡觉", "海边的日落", "生日蛋糕", "我的女儿", "北京天安门", "繁體中文照片", "写真", "猫の写真", "東京タワー",
    "ひらがな", "カタカナ", "ｶﾀｶﾅ", "ｱｲｳｴｵ", "ﾊﾟﾊﾟ", "富士山と桜", "おはようございます", "ラーメン", "ﾗｰﾒﾝ", "강아지", "고양이 사진",
    "서울의 밤", "한국어", "\u1100\u1161\u11a8", "𠮷野家", "𩸽", "〜", "「引用」", "『本』", "、。", "ＡＢＣ", "ａｂｃ",
    "Ｈｅｌｌｏ　Ｗｏｒｌｄ", "ｃａｔ", "ー", "〆", "㊗", "㍿", "㈱", "丼", "中文 English 日本語 한국어",
]

OTHER_SCRIPTS = [
    "собака", "Кошка на диване", "ЗАКАТ НА МОРЕ", "Москва", "Київ", "ёжик", "Ёлка", "щука", "Ѣ",
    "Україна", "Беларусь", "Српски", "Македонија", "قطة", "كلب في الحديقة", "غروب الشمس", "العربية",
    "مَرْحَبًا", "ـــــ", "القاهرة ٢٠٢٣", "فارسی", "گربه", "اردو", "कुत्ता", "बिल्ली सोफ़े पर",
    "नमस्ते", "हिन्दी", "क्‍ष", "क्‌ष", "ऑ", "ॐ", "भारत", "שלום", "חתול", "עִבְרִית", "ירושלים",
    "כֶּלֶב", "ภาษาไทย", "แมว", "กรุงเทพ", "ລາວ", "ខ្មែរ", "မြန်မာ", "தமிழ்", "తెలుగు", "ಕನ್ನಡ",
    "മലയാളം", "বাংলা", "ਪੰਜਾਬੀ", "ગુજરાતી", "ଓଡ଼ିଆ", "සිංහල", "ქართული", "Հայերեն", "አማርኛ", "ᏣᎳᎩ",
    "ᐃᓄᒃᑎᑐᑦ", "ܣܘܪܝܝܐ", "ދިވެހި", "ⵜⴰⵎⴰⵣⵉⵖⵜ", "ꦧꦱꦗꦮ", "ᠮᠣᠩᠭᠣᠯ", "བོད་ཡིག", "𐌲𐌿𐍄𐌹𐍃𐌺",
    "Tiếng Việt có dấu", "Türkçe ğüşıöç", "Română țș", "Magyar őű", "Polski żółć", "Eesti õ",
    "Íslenska ðþ", "Føroyskt", "Kiswahili", "Yorùbá", "Igbo ị", "Hausa ƙ", "Wolof ñ",
]

HTML_ENTITIES = [
    "&amp;", "&lt;", "&gt;", "&quot;", "&apos;", "&#39;", "&#x27;", "&#34;", "&nbsp;", "&copy;",
    "&reg;", "&eacute;", "&Eacute;", "&uuml;", "&szlig;", "&hellip;", "&mdash;", "&ndash;",
    "&rarr;", "&hearts;", "&euro;", "&#8364;", "&#x20AC;", "&#x1F600;", "&#128512;", "&#x1f436;",
    "&#X1F436;", "&#0;", "&#x0;", "&#xD800;", "&#55357;", "&#x110000;", "&#99999999;", "&#x80;",
    "&#150;", "&#9;", "&#10;", "&#13;", "&#32;", "&#160;", "&#xA0;", "&amp;amp;", "&amp;lt;",
    "&amp;#39;", "&amp;amp;amp;", "&amp;amp;amp;amp;", "&amp;quot;", "&amp", "&lt", "&copy",
    "&eacute", "&ampx", "&notit;", "&notin;", "&unknown;", "&;", "&#;", "&#x;", "& amp;", "&AMP;",
    "&Amp;", "&LT;", "Tom &amp; Jerry", "Tom &amp;amp; Jerry", "&lt;b&gt;bold&lt;/b&gt;",
    "<b>bold</b>", "<br/>", '<a href="x">link</a>', "&lt;start_of_text&gt;", "it&#39;s",
    "it&amp;#39;s", "don&rsquo;t", "&ldquo;hi&rdquo;", "caf&eacute; au lait", "&#x63;&#x61;&#x74;",
    "&#100;&#111;&#103;", "a&nbsp;b&nbsp;&nbsp;c", "&zwj;", "&zwnj;", "&shy;", "&NewLine;", "&Tab;",
    "&#x2028;", "&#x3000;", "&ThickSpace;",
]

# ftfy unescapes HTML itself only when the text holds no "<" or ">"; next to markup, only the
# tokenizer's own two rounds of unescaping apply.
HTML_WITH_MARKUP = [
    "<b>Tom &amp;amp; Jerry</b>", "<p>&amp;amp;amp;</p>", "<i>caf&amp;eacute;</i>",
    "x > y &amp;amp; z", "1 < 2 &amp;lt; 3", "<3 &amp;hearts;", "-> &amp;#39;quoted&amp;#39;",
    "<br> &amp;nbsp;", "a <tag> &#x1F600; &amp;#x1F600; &amp;amp;#x1F600;",
    "&lt;b&gt; <b> &amp;lt;b&amp;gt;", "<start_of_text> &amp;amp;",
    "&amp;lt;end_of_text&amp;gt; >", "<<&amp;>>", ">&amp;amp;amp;amp;<",
]

WHITESPACE = [
    "", " ", "  ", "\t", "\n", "\r", "\r\n", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x1f", "\x85",
    "\xa0", "\u1680", "\u2000", "\u2002", "\u2003", "\u2009", "\u200a", "\u2028", "\u2029",
    "\u202f", "\u205f", "\u3000", "\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u180e",
    "\u00ad", " \t\n\r ", "\u3000\u3000", "\xa0\xa0\xa0", "a\tb", "a\nb", "a\r\nb", "a\rb",
    "a\x0bb", "a\x0cb", "a\x1cb", "a\x85b", "a\xa0b", "a\u2028b", "a\u2029b", "a\u202fb",
    "a\u3000b", "a\u200bb", "a\u200cb", "a\u200db", "a\u2060b", "a\ufeffb", "a\u180eb", "a\u00adb",
    "a\u2062b", "dog    on   a\t\tbeach", "  leading spaces", "trailing spaces   ",
    "\n\nnewlines around\n\n", "tab\tseparated\tvalues", "line one\nline two\nline three",
    "para one\n\npara two", "\ufeffbom at start", "zero\u200bwidth\u200bspaces",
    "non\xa0breaking\xa0space", "ideographic\u3000space",
]

MOJIBAKE = [
    "cafÃ©", "naÃ¯ve", "Ã¼ber", "MÃ¼nchen", "SÃ£o Paulo", "crÃ¨me brÃ»lÃ©e", "Ã…ngstrÃ¶m",
    "â€œquotedâ€\x9d", "donâ€™t", "itâ€™s", "â€”", "â€¦", "â‚¬5", "ðŸ˜€", "ðŸ¶", "ðŸ‡«ðŸ‡·",
    "Ã¢â‚¬â„¢", "ÃƒÂ©", "Ãƒâ€šÃ‚Â", "Ð¿Ñ€Ð¸Ð²ÐµÑ‚", "ÐºÐ¾ÑˆÐºÐ°", "æ—¥æœ¬èªž", "í•œêµ­ì–´",
    "Ø§Ù„Ø¹Ø±Ø¨ÙŠØ©", "×©×œ×•×", "à¤¨à¤®à¤¸à¥\x8dà¤¤à¥‡", "Ã", "Ã\xa0", "Ã\xa0 la carte", "â€",
    "\u00c3\u00a9t\u00c3\u00a9", "LiÃ¨ge", "Ã©tÃ©", "BeyoncÃ©", "PokÃ©mon", "Ã‰cole",
]

CONTRACTION_WORDS = ["it", "don", "we", "you", "i", "they", "she", "he", "that", "let", "what"]
CONTRACTION_SUFFIXES = ["s", "t", "re", "ve", "m", "ll", "d"]
APOSTROPHES = ["'", "’", "ʼ", "`", "´", "′"]

CONTRACTIONS_EXTRA = [
    "rock 'n' roll", "o'clock", "'90s", "''", "'''", "'''s", "''s", "'s", "'S", "'", "'d'd'd",
    "'sss", "'ll've", "y'all'd've", "'tis", "'twas", "ma'am", "O'Neill", "D'Angelo", "l'été",
    "aujourd'hui", "'ſ", "it'ſ", "'ſt", "'K", "'ﬆ", "''ll", "'re'", "' s", "'  ll", "'LL", "'Ll",
    "'lL", "'RE", "'Re", "'VE", "'vE", "'M", "'D", "'T", "'e", "'x", "'1", "'é", "'ß",
]

SPECIAL_NAMES = [
    "<start_of_text>", "<end_of_text>", "<START_OF_TEXT>", "<End_Of_Text>", "<|startoftext|>",
    "<|endoftext|>", "<start_of_text><end_of_text>", "a<start_of_text>b", "<<start_of_text>>",
    "<start_of_text", "start_of_text>", "<start of text>", "<ſtart_of_text>", "</w>", "a</w>b",
    "</w></w>", "<unk>", "[CLS]", "[SEP]", "<pad>", "<s>", "</s>", "<|im_start|>",
    "dog <end_of_text> cat", "&lt;end_of_text&gt;", "<START_OF_TEXT> hello",
]

CONTROL = [
    "\x00", "a\x00b", "\x01\x02\x03", "\x07bell", "\x08backspace", "\x1b", "\x1b[31mred\x1b[0m",
    "\x1b[1;32mbold green\x1b[0m text", "\x1b]0;title\x07", "\x7f", "a\x7fb", "\x80", "\x81",
    "\x8d", "\x9f", "a\x9db", "\u200e", "\u200f", "a\u200eb", "\u202a\u202b\u202c\u202d\u202e",
    "\u202eevil", "\u2066isolate\u2069", "\ufffd", "a\ufffdb", "\ufffe", "\uffff", "\ue000",
    "\U000f0000", "\U0010ffff", "\U000e0001", "\U000e0041\U000e0042", "\u0378", "\u0380", "\ud800",
    "\udfff", "a\ud800b", "\ud83d \ude00", "\ud83d", "\ude00", "\udc80\udcff", "\u0300", "a\u0300",
    "\u0300\u0301\u0302", "e\u0301\u0301\u0301", "\u034f", "\u0345",
    "Z\u0351\u036b\u0343\u036a\u0302\u036b\u033d\u034f\u0334\u0319\u0324\u031e\u0349\u035a",
    "\u061c", "\u115f", "\u3164", "\uffa0", "\u2800", "\u17b4", "\U0001d159",
]

ACCENT_BASES = [
    "café", "naïve", "résumé", "Zürich", "São Tomé", "Dvořák", "Ångström", "Nguyễn Văn An",
    "Ελληνικά", "Йошкар-Ола", "한국어", "ガギグゲゴ", "Åland", "œuvre", "piñata", "Ḱḯḷḹ",
]

# Code point ranges for the random strings, chosen to cover many scripts and categories.
UNICODE_BLOCKS = [
    (0x0020, 0x007E), (0x00A0, 0x00FF), (0x0100, 0x024F), (0x0250, 0x02FF), (0x0300, 0x036F),
    (0x0370, 0x03FF), (0x0400, 0x04FF), (0x0530, 0x058F), (0x0590, 0x05FF), (0x0600, 0x06FF),
    (0x0900, 0x097F), (0x0980, 0x09FF), (0x0E00, 0x0E7F), (0x10A0, 0x10FF), (0x1100, 0x11FF),
    (0x1E00, 0x1EFF), (0x2000, 0x206F), (0x20A0, 0x20CF), (0x2100, 0x214F), (0x2150, 0x218F),
    (0x2190, 0x21FF), (0x2200, 0x22FF), (0x2460, 0x24FF), (0x2500, 0x257F), (0x2600, 0x26FF),
    (0x2700, 0x27BF), (0x3000, 0x303F), (0x3040, 0x309F), (0x30A0, 0x30FF), (0x4E00, 0x9FFF),
    (0xAC00, 0xD7A3), (0xFB00, 0xFB4F), (0xFE00, 0xFE0F), (0xFE30, 0xFE4F), (0xFF00, 0xFFEF),
    (0x1D400, 0x1D7FF), (0x1F000, 0x1F02F), (0x1F100, 0x1F1FF), (0x1F300, 0x1F5FF),
    (0x1F600, 0x1F64F), (0x1F680, 0x1F6FF), (0x1F900, 0x1F9FF), (0x20000, 0x2A6DF),
    (0xE0000, 0xE007F),
]

# fmt: on

LONG_PARAGRAPH = (
    "A long, rambling description of a summer holiday: we drove from the city to the coast, "
    "stopped for coffee and croissants in a small village, swam in the cold sea, built a "
    "sandcastle with a moat and three towers, watched the sun go down behind the lighthouse, "
    "ate grilled fish with lemon and far too many chips, and walked home under the stars while "
    "the dog chased every seagull it could find on the beach."
)

# ---------------------------------------------------------------------------------------------
# Generators
# ---------------------------------------------------------------------------------------------


def generated_queries(rng: random.Random, count: int) -> list[str]:
    """Photo-search queries from the templates, with random fillers."""
    out = []
    for _ in range(count):
        template = rng.choice(TEMPLATES)
        subject, subject2 = rng.choice(SUBJECTS), rng.choice(SUBJECTS)
        place = rng.choice(PLACES)
        text = template.format(
            adj=rng.choice(ADJECTIVES),
            subject=subject,
            subject2=subject2,
            place=place,
            SUBJECT=subject.upper(),
            PLACE=place.upper(),
            Subject=subject.title(),
            hashtag=rng.choice(["tbt", "nofilter", "travel", "Family2023", "sunset_lovers"]),
            year=rng.randint(1950, 2030),
        )
        out.append(text)
    return out


def generated_numbers(rng: random.Random, count: int) -> list[str]:
    """Numbers and punctuation mixed into short phrases."""
    out = []
    for _ in range(count):
        kind = rng.randrange(6)
        if kind == 0:
            out.append(str(rng.randint(0, 10 ** rng.randint(1, 15))))
        elif kind == 1:
            out.append(f"{rng.uniform(-1000, 1000):.{rng.randint(0, 6)}f}")
        elif kind == 2:
            out.append(f"IMG_{rng.randint(0, 9999):04d}.{rng.choice(['jpg', 'JPG', 'heic'])}")
        elif kind == 3:
            out.append(
                f"{rng.randint(1, 28)}{rng.choice('/.-')}{rng.randint(1, 12)}"
                f"{rng.choice('/.-')}{rng.randint(1900, 2099)}"
            )
        elif kind == 4:
            punct = "".join(rng.choice("!?.,;:-_()[]{}<>/\\|@#$%^&*+=~`'\"") for _ in range(6))
            out.append(f"{rng.choice(SUBJECTS)}{punct}{rng.choice(SUBJECTS)}")
        else:
            out.append(f"{rng.randint(2, 99)} {rng.choice(SUBJECTS)}s {rng.choice(PLACES)}")
    return out


def generated_emoji(rng: random.Random, count: int) -> list[str]:
    """Emoji alone, in runs, and between words."""
    out = []
    for _ in range(count):
        pieces = [rng.choice(EMOJI) for _ in range(rng.randint(1, 5))]
        if rng.random() < 0.5:
            pieces.insert(rng.randrange(len(pieces) + 1), rng.choice(SUBJECTS))
        out.append(rng.choice(["", " "]).join(pieces))
    return out


def generated_accents(rng: random.Random) -> list[str]:
    """Each accented base in NFC, NFD, NFKD and upper case, plus random mixes."""
    out = []
    for base in ACCENT_BASES:
        for form in ("NFC", "NFD", "NFKC", "NFKD"):
            out.append(unicodedata.normalize(form, base))
        out.append(unicodedata.normalize("NFD", base.upper()))
        out.append(f"{rng.choice(QUERIES)} {unicodedata.normalize('NFD', base)}")
    return out


def generated_scripts(rng: random.Random, count: int) -> list[str]:
    """Words from different scripts mixed together and with English."""
    pool = CJK + OTHER_SCRIPTS + ACCENTED
    out = []
    for _ in range(count):
        words = [rng.choice(pool) for _ in range(rng.randint(1, 4))]
        if rng.random() < 0.4:
            words.append(rng.choice(SUBJECTS))
        out.append(rng.choice([" ", "", ", "]).join(words))
    return out


def generated_entities(rng: random.Random, count: int) -> list[str]:
    """HTML entities inside queries, some escaped once or twice more, some next to markup."""
    out = []
    for _ in range(count):
        entity = rng.choice(HTML_ENTITIES)
        for _ in range(rng.choice([0, 0, 1, 2])):
            entity = entity.replace("&", "&amp;")
        text = f"{rng.choice(SUBJECTS)}{rng.choice(['', ' '])}{entity}{rng.choice(PLACES)}"
        if rng.random() < 0.4:
            text = rng.choice(["<b>{}</b>", "{} <3", "a > {}", "<{}"]).format(text)
        out.append(text)
    return out


def generated_whitespace(rng: random.Random, count: int) -> list[str]:
    """Words joined by random runs of unusual whitespace and invisible characters."""
    spaces = [s for s in WHITESPACE if s and len(s) <= 2]
    out = []
    for _ in range(count):
        words = [rng.choice(SUBJECTS + ACCENTED) for _ in range(rng.randint(0, 4))]
        joiners = ["".join(rng.choice(spaces) for _ in range(rng.randint(1, 3))) for _ in words]
        text = "".join(j + w for j, w in zip(joiners, words)) + rng.choice(spaces)
        out.append(text)
    return out


def generated_mojibake(rng: random.Random, count: int) -> list[str]:
    """Text encoded as UTF-8 and decoded as a legacy code page, once or twice."""
    sources = ACCENTED + CJK[:12] + OTHER_SCRIPTS[:12] + EMOJI[:30] + ["it’s", "“hi”", "—"]
    out = []
    while len(out) < count:
        text = rng.choice(sources)
        if rng.random() < 0.5:
            text = f"{rng.choice(SUBJECTS)} {text}"
        for _ in range(rng.choice([1, 1, 2])):
            codec = rng.choice(["cp1252", "latin-1", "cp437", "mac_roman"])
            text = text.encode("utf-8").decode(codec, errors="replace")
        out.append(text)
    return out


def generated_contractions() -> list[str]:
    """Every contraction, with several apostrophes and letter cases."""
    out = []
    for word in CONTRACTION_WORDS:
        for suffix in CONTRACTION_SUFFIXES:
            text = f"{word}'{suffix}"
            out += [text, text.upper(), text.title(), f"{word}'{suffix.upper()}"]
    for apostrophe in APOSTROPHES:
        for suffix in CONTRACTION_SUFFIXES:
            out.append(f"they{apostrophe}{suffix} here")
    return out


def generated_long(rng: random.Random) -> list[str]:
    """Texts around and far beyond the 77-token context."""
    out = [" ".join(["a"] * count) for count in range(70, 82)]
    out += ["dog " * count for count in (74, 75, 76, 77, 200)]
    out += [
        LONG_PARAGRAPH,
        LONG_PARAGRAPH * 3,
        LONG_PARAGRAPH.upper(),
        "supercalifragilisticexpialidocious" * 10,
        "a" * 500,
        "ab" * 300,
        "x" * 5000,
        "🐶" * 100,
        "👨‍👩‍👧‍👦" * 40,
        "猫" * 200,
        "一只猫在沙发上睡觉" * 20,
        "собака " * 60,
        "&amp; " * 100,
        "!?" * 200,
        "1234567890" * 20,
        " ".join(QUERIES),
        "\n".join(QUERIES),
        "".join(QUERIES),
        "'s" * 100,
        "<start_of_text>" * 100,
    ]
    # A word of several BPE pieces straddles the cut at different offsets.
    for pad in range(70, 78):
        out.append(" ".join(["a"] * pad) + " antidisestablishmentarianism photographs")
    for _ in range(20):
        out.append(" ".join(rng.choice(QUERIES + SUBJECTS + PLACES) for _ in range(40)))
    return out


def random_unicode(rng: random.Random, count: int, blocks: bool) -> list[str]:
    """Random strings from the listed blocks, or from all of Unicode (surrogates included)."""
    out = []
    for _ in range(count):
        chars = []
        for _ in range(rng.randint(1, 24)):
            if blocks:
                low, high = rng.choice(UNICODE_BLOCKS)
                chars.append(chr(rng.randint(low, high)))
            else:
                chars.append(chr(rng.randint(0, 0x10FFFF)))
            if rng.random() < 0.15:
                chars.append(" ")
        out.append("".join(chars))
    return out


def build_corpus() -> list[str]:
    """The whole corpus, in a fixed order, without duplicates."""
    rng = random.Random(SEED)
    parts: list[Iterable[str]] = [
        [""],
        QUERIES,
        generated_queries(rng, 600),
        PUNCTUATION_AND_NUMBERS,
        generated_numbers(rng, 150),
        EMOJI,
        generated_emoji(rng, 150),
        ACCENTED,
        generated_accents(rng),
        CJK,
        OTHER_SCRIPTS,
        generated_scripts(rng, 200),
        HTML_ENTITIES,
        HTML_WITH_MARKUP,
        generated_entities(rng, 160),
        WHITESPACE,
        generated_whitespace(rng, 120),
        MOJIBAKE,
        generated_mojibake(rng, 120),
        generated_contractions(),
        CONTRACTIONS_EXTRA,
        SPECIAL_NAMES,
        CONTROL,
        generated_long(rng),
        random_unicode(rng, 300, blocks=True),
        random_unicode(rng, 150, blocks=False),
    ]
    corpus: dict[str, None] = {}
    for part in parts:
        corpus.update(dict.fromkeys(part))
    return list(corpus)


# ---------------------------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------------------------

_ESCAPED_CATEGORIES = {"Cc", "Cs", "Co", "Cn", "Zl", "Zp"}


def corpus_line(text: str) -> str:
    """One JSON line; ASCII escapes where a character could be lost or split a line."""
    unsafe = any(
        unicodedata.category(char) in _ESCAPED_CATEGORIES
        or (unicodedata.category(char) == "Zs" and char != " ")
        for char in text
    )
    return json.dumps(text, ensure_ascii=unsafe)


def reference_ids(corpus: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """``[N, 77] int32`` ids and ``[N] int32`` untruncated lengths, from open_clip."""
    import open_clip

    ids = open_clip.tokenize(corpus, context_length=CONTEXT_LENGTH).numpy()
    tokenizer = open_clip.get_tokenizer("ViT-B-32")
    again = tokenizer(corpus).numpy()
    if not np.array_equal(ids, again):
        raise SystemExit("open_clip.tokenize and get_tokenizer('ViT-B-32') disagree")
    lengths = np.array([len(tokenizer.encode(text)) for text in corpus], dtype=np.int32)
    return ids.astype(np.int32), lengths


def main() -> int:
    corpus = build_corpus()
    text = "".join(corpus_line(item) + "\n" for item in corpus)
    DATA.mkdir(parents=True, exist_ok=True)
    CORPUS_PATH.write_bytes(text.encode("utf-8"))
    # Read back what was written, so the ids belong to the file exactly.
    lines = CORPUS_PATH.read_bytes().decode("utf-8").split("\n")[:-1]
    reread = [json.loads(line) for line in lines]
    if reread != corpus:
        raise SystemExit("the corpus did not survive a write and read")
    ids, lengths = reference_ids(corpus)
    np.savez_compressed(
        EXPECTED_PATH,
        ids=ids,
        lengths=lengths,
        corpus_sha256=np.array(hashlib.sha256(CORPUS_PATH.read_bytes()).hexdigest()),
        open_clip_version=np.array(metadata.version("open_clip_torch")),
        ftfy_version=np.array(metadata.version("ftfy")),
        regex_version=np.array(metadata.version("regex")),
    )
    print(f"{len(corpus)} strings -> {CORPUS_PATH}")
    print(f"ids {ids.shape} {ids.dtype} -> {EXPECTED_PATH}")
    print(f"{int((lengths > CONTEXT_LENGTH - 2).sum())} strings are cut to the context")
    return 0


if __name__ == "__main__":
    sys.exit(main())

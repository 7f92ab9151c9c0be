"""Opens a run's report.html in headless Chromium and checks it as a reader sees it: every
section is there, every image has decoded (naturalWidth > 0), and nothing was fetched from the
network (the page is self-contained). Saves a full-page screenshot.

usage: report_page.py CHROMIUM REPORT.html SCREENSHOT.png SECTION_ID[,SECTION_ID...] MIN_IMAGES
Prints one JSON line of what it saw; exits non-zero on a failed check.
"""

import json
import os
import sys

from cdp import check, close, evaluate, open_page, screenshot, start, wait_until

chromium, report, shot, sections, min_images = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4].split(","), int(sys.argv[5])
start(chromium)
try:
    s = open_page("file://" + os.path.abspath(report))
    wait_until(s, "document.readyState === 'complete' && [...document.images].every(i => i.complete)", "the report did not load")
    found = evaluate(s, "[...document.querySelectorAll('section[id]')].map(e => e.id)")
    missing = [x for x in sections if x not in found]
    check(not missing, f"sections {missing} are in the page (found {found})")
    images = evaluate(s, "[...document.images].map(i => ({w: i.naturalWidth, h: i.naturalHeight, src: i.src.slice(0, 22)}))")
    check(len(images) >= min_images, f"at least {min_images} images ({len(images)})")
    check(all(i["w"] > 0 and i["h"] > 0 for i in images), f"every image decoded: {images}")
    check(all(i["src"].startswith("data:image/png;base64") for i in images), "images are inlined")
    external = evaluate(s, "performance.getEntriesByType('resource').map(e => e.name).filter(n => !n.startsWith('data:'))")
    check(not external, f"nothing fetched: {external}")
    numbers = evaluate(s, "[...document.querySelectorAll('td')].filter(td => /\\d/.test(td.textContent)).length")
    check(numbers > 20, f"the tables hold numbers ({numbers} cells)")
    screenshot(s, shot, full_page=True)
    print(json.dumps({"sections": found, "images": len(images), "numeric_cells": numbers}))
finally:
    close()

#!/bin/sh
# Find a headless-capable Chromium for the report's render test (tests/visualization/
# test_report_render.py), or install Debian's `chromium` package when it is missing and
# this shell can (root, apt-get). Otherwise say how; the test then skips with the same hint.
# Never fails: a machine without Chromium can still run the rest of the suite.
if [ -n "$CAPTUM_MEDCAM_CHROMIUM" ]; then
    exit 0
fi
for name in chromium chromium-browser google-chrome google-chrome-stable chrome; do
    if command -v "$name" >/dev/null 2>&1; then
        exit 0
    fi
done
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "ensure-chromium: installing Debian's chromium for the report render test"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium \
        || echo "ensure-chromium: apt-get could not install chromium; the render test will skip"
else
    echo "ensure-chromium: no Chromium found; the report render test will skip." \
        "Install it with 'sudo apt-get install chromium' (Debian/Ubuntu), or set" \
        "CAPTUM_MEDCAM_CHROMIUM=/path/to/chrome"
fi
exit 0

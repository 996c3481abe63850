#!/usr/bin/env bash
# Build app.jar from PrintEnv.java with a JDK (Debian: openjdk-17-jdk-headless), then the image.
set -euo pipefail
cd "$(dirname "$0")"
rm -rf classes && mkdir classes
javac --release 17 -d classes PrintEnv.java
jar --create --file app.jar --main-class PrintEnv -C classes .
rm -rf classes
sconectl apply -f service.yaml "$@"

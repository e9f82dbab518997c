#!/bin/sh
echo "hello from ci-app $(cat /app/VERSION)"

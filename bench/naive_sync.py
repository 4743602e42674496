"""The baseline: what a quick solution does. Download every file, delete the prefix, upload every file.

python -m bench.naive_sync SOURCE_URL S3_ENDPOINT BUCKET PREFIX USER_AGENT
"""

import re
import sys
from urllib.parse import urljoin

import boto3
import requests


def main(source_url: str, endpoint: str, bucket: str, prefix: str, user_agent: str) -> None:
    session = requests.Session()
    session.headers["User-Agent"] = user_agent
    page = session.get(source_url, timeout=60)
    page.raise_for_status()
    links = [urljoin(source_url, href) for href in re.findall(r'HREF="([^"]+)"', page.text, re.IGNORECASE)]
    files = {}
    for url in links:
        if url.startswith(source_url) and not url.endswith("/"):
            response = session.get(url, timeout=60)
            response.raise_for_status()
            files[url[len(source_url):]] = response.content

    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                      aws_access_key_id="bench", aws_secret_access_key="bench-secret")
    for listed in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys = [{"Key": obj["Key"]} for obj in listed.get("Contents", [])]
        if keys:
            s3.delete_objects(Bucket=bucket, Delete={"Objects": keys})
    for name, body in files.items():
        s3.put_object(Bucket=bucket, Key=prefix + name, Body=body)


if __name__ == "__main__":
    main(*sys.argv[1:6])

"""Creates an S3 bucket with boto3: object_store, which the tests use for objects, has no
bucket API. Usage: s3_create_bucket.py --endpoint URL --bucket NAME"""

import argparse

import boto3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--bucket", required=True)
    args = parser.parse_args()
    s3 = boto3.client(
        "s3",
        endpoint_url=args.endpoint,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
    s3.create_bucket(Bucket=args.bucket)


if __name__ == "__main__":
    main()

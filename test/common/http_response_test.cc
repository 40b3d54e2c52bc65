#include "common/http_response.h"

#include <gtest/gtest.h>

namespace drawbridge::common {
namespace {

TEST(HttpResponseTest, BodyByContentLengthChunksOrClose) {
  auto r = ParseHttpResponse("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX: y\r\n\r\nhello", 100);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, "hello");
  EXPECT_TRUE(r->delimited);
  // Bytes past Content-Length are not the body.
  EXPECT_EQ(ParseHttpResponse("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nhello", 100)->body,
            "he");
  auto chunked = ParseHttpResponse(
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;x=1\r\nhello\r\n6\r\n world\r\n0\r\n"
      "\r\n",
      100);
  ASSERT_TRUE(chunked.ok()) << chunked.status();
  EXPECT_EQ(chunked->body, "hello world");
  EXPECT_TRUE(chunked->delimited);
  auto to_close = ParseHttpResponse("HTTP/1.0 404 Not Found\n\nmissing", 100);
  ASSERT_TRUE(to_close.ok()) << to_close.status();
  EXPECT_EQ(to_close->status, 404);
  EXPECT_EQ(to_close->body, "missing");
  EXPECT_FALSE(to_close->delimited);
}

TEST(HttpResponseTest, MalformedResponsesAreInvalidArgument) {
  std::string many_headers = "HTTP/1.1 200 OK\r\n";
  for (int i = 0; i < 70; ++i) {
    many_headers += "X: y\r\n";
  }
  many_headers += "\r\n";
  const std::string cases[] = {
      "",
      "HTTP/1.1 200 OK",                      // no end of line
      "HTTP/2 200 OK\r\n\r\n",                // not HTTP/1.x
      "HTTP/1.1 2x0 OK\r\n\r\n",              // status not digits
      "HTTP/1.1 099 Low\r\n\r\n",             // below 100
      "HTTP/1.1 200 OK\r\nno colon\r\n\r\n",  // header without a name
      "HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nshort",
      "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc",
      "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabX0\r\n\r\n",
      "HTTP/1.1 200 OK\r\nContent-Length: 200\r\n\r\n" + std::string(200, 'a'),  // over limit
      "HTTP/1.1 200 OK\r\n\r\n" + std::string(101, 'a'),
      "HTTP/1.1 200 OK\r\nX: " + std::string(9000, 'a') + "\r\n\r\n",
      many_headers,
  };
  for (const auto& c : cases) {
    auto r = ParseHttpResponse(c, 100);
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << c.substr(0, 60);
  }
}

}  // namespace
}  // namespace drawbridge::common

#include "common/dns_srv.h"

#include <arpa/nameser.h>
#include <netdb.h>
#include <netinet/in.h>
#include <resolv.h>

#include <algorithm>
#include <array>
#include <cctype>

#include "common/random.h"
#include "common/status_macros.h"
#include "common/strings.h"

namespace drawbridge::common {
namespace {

absl::Status Malformed(std::string_view why) {
  return absl::InvalidArgumentError(StrCat("malformed DNS SRV answer: ", why));
}

bool IsLabelChar(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '-' || c == '_';
}

}  // namespace

absl::Status ValidateSrvName(std::string_view name) {
  if (!name.empty() && name.back() == '.') {
    name.remove_suffix(1);
  }
  auto bad = [&](std::string_view why) {
    return absl::InvalidArgumentError(
        StrCat("DNS SRV name \"", name.substr(0, 100), "\" ", why,
               " (expected _SERVICE._PROTO.DOMAIN, e.g. _drawbridge._tcp.example.com)"));
  };
  if (name.empty() || name.size() > 253) {
    return bad("is empty or longer than 253 bytes");
  }
  int labels = 0;
  size_t start = 0;
  while (start <= name.size()) {
    size_t dot = name.find('.', start);
    std::string_view label =
        name.substr(start, dot == std::string_view::npos ? name.npos : dot - start);
    if (label.empty() || label.size() > 63 ||
        !std::all_of(label.begin(), label.end(), IsLabelChar)) {
      return bad("has an empty, overlong or invalid label");
    }
    ++labels;
    if (dot == std::string_view::npos) {
      break;
    }
    start = dot + 1;
  }
  if (labels < 3 || name.front() != '_') {
    return bad("is not an SRV name");
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<SrvTarget>> ParseSrvResponse(std::string_view message) {
  if (message.size() > 65535) {
    return Malformed("longer than 65535 bytes");
  }
  const auto* begin = reinterpret_cast<const unsigned char*>(message.data());
  const unsigned char* end = begin + message.size();
  ns_msg msg;
  if (ns_initparse(begin, static_cast<int>(message.size()), &msg) != 0) {
    return Malformed("the header or a section does not parse");
  }
  std::vector<SrvTarget> targets;
  bool not_offered = false;
  const int answers = ns_msg_count(msg, ns_s_an);
  for (int i = 0; i < answers; ++i) {
    ns_rr rr;
    if (ns_parserr(&msg, ns_s_an, i, &rr) != 0) {
      return Malformed("an answer record does not parse");
    }
    if (ns_rr_type(rr) != ns_t_srv || ns_rr_class(rr) != ns_c_in) {
      continue;
    }
    // priority, weight, port (16 bits each), then the target name.
    const unsigned char* rdata = ns_rr_rdata(rr);
    const size_t rdlen = ns_rr_rdlen(rr);
    if (rdlen < 7 || rdata + rdlen > end) {
      return Malformed("an SRV record is too short");
    }
    SrvTarget t;
    t.priority = static_cast<uint16_t>(rdata[0] << 8 | rdata[1]);
    t.weight = static_cast<uint16_t>(rdata[2] << 8 | rdata[3]);
    t.port = static_cast<uint16_t>(rdata[4] << 8 | rdata[5]);
    std::array<char, NS_MAXDNAME> host{};
    // RFC 2782 forbids compressing the target; some servers do it anyway.
    int used = dn_expand(begin, end, rdata + 6, host.data(), static_cast<int>(host.size()));
    if (used < 1 || static_cast<size_t>(used) != rdlen - 6) {
      return Malformed("an SRV target name does not parse");
    }
    t.host = host.data();
    if (t.host.empty() || t.host == ".") {
      not_offered = true;
      continue;
    }
    if (!std::all_of(t.host.begin(), t.host.end(),
                     [](char c) { return IsLabelChar(c) || c == '.'; })) {
      return Malformed("an SRV target is not a host name");
    }
    if (t.port == 0) {
      return Malformed("an SRV target has port 0");
    }
    if (targets.size() < kMaxSrvTargets) {
      targets.push_back(std::move(t));
    }
  }
  if (not_offered && targets.empty()) {
    return std::vector<SrvTarget>();
  }
  return targets;
}

std::vector<SrvTarget> OrderSrvTargets(std::vector<SrvTarget> targets,
                                       const std::function<uint64_t(uint64_t)>& uniform) {
  std::stable_sort(targets.begin(), targets.end(),
                   [](const SrvTarget& a, const SrvTarget& b) { return a.priority < b.priority; });
  std::vector<SrvTarget> ordered;
  ordered.reserve(targets.size());
  size_t group = 0;
  while (group < targets.size()) {
    size_t group_end = group;
    while (group_end < targets.size() && targets[group_end].priority == targets[group].priority) {
      ++group_end;
    }
    std::vector<SrvTarget> left(targets.begin() + static_cast<ptrdiff_t>(group),
                                targets.begin() + static_cast<ptrdiff_t>(group_end));
    while (!left.empty()) {
      // Each target's chance is (weight + 1) / sum: RFC 2782's running sum,
      // with weight-0 targets given a small chance rather than none.
      uint64_t sum = 0;
      for (const auto& t : left) {
        sum += uint64_t{t.weight} + 1;
      }
      uint64_t draw = uniform(sum);
      size_t pick = 0;
      for (; pick + 1 < left.size(); ++pick) {
        uint64_t w = uint64_t{left[pick].weight} + 1;
        if (draw < w) {
          break;
        }
        draw -= w;
      }
      ordered.push_back(std::move(left[pick]));
      left.erase(left.begin() + static_cast<ptrdiff_t>(pick));
    }
    group = group_end;
  }
  return ordered;
}

absl::StatusOr<std::vector<SrvTarget>> LookupSrv(const std::string& name) {
  RETURN_IF_ERROR(ValidateSrvName(name));
  struct __res_state state {};
  if (res_ninit(&state) != 0) {
    return absl::UnavailableError("cannot read the resolver configuration (/etc/resolv.conf)");
  }
  std::vector<unsigned char> answer(65535);
  int n = res_nquery(&state, name.c_str(), ns_c_in, ns_t_srv, answer.data(),
                     static_cast<int>(answer.size()));
  const int h_error = state.res_h_errno;
  res_nclose(&state);
  if (n < 0) {
    if (h_error == HOST_NOT_FOUND || h_error == NO_DATA) {
      return absl::NotFoundError(StrCat("DNS has no SRV records for ", name));
    }
    return absl::UnavailableError(StrCat("DNS SRV lookup of ", name, " failed (",
                                         h_error == TRY_AGAIN ? "no answer" : "server failure",
                                         ")"));
  }
  ASSIGN_OR_RETURN(auto targets,
                   ParseSrvResponse(std::string_view(reinterpret_cast<const char*>(answer.data()),
                                                     static_cast<size_t>(n))));
  if (targets.empty()) {
    return absl::NotFoundError(StrCat("DNS says ", name, " is not offered (no SRV target)"));
  }
  return OrderSrvTargets(std::move(targets), [](uint64_t bound) { return RandomUniform(bound); });
}

std::string SrvAddress(const SrvTarget& target) { return StrCat(target.host, ":", target.port); }

}  // namespace drawbridge::common

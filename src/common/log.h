#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace drawbridge::common {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3 };
enum class LogFormat { kText, kJson };

using LogFields = std::vector<std::pair<std::string, std::string>>;

// One line per event on stderr, as text (`ts LEVEL event k=v ...`) or JSON.
// Callers pass values that are safe to log: never key material or tokens.
void Log(LogLevel level, std::string_view event, const LogFields& fields = {});

void SetLogLevel(LogLevel level);
void SetLogFormat(LogFormat format);
// Parses "debug|info|warn|error"; returns false on anything else.
bool ParseLogLevel(std::string_view text, LogLevel* out);

inline void LogInfo(std::string_view event, const LogFields& fields = {}) {
  Log(LogLevel::kInfo, event, fields);
}
inline void LogWarn(std::string_view event, const LogFields& fields = {}) {
  Log(LogLevel::kWarn, event, fields);
}
inline void LogError(std::string_view event, const LogFields& fields = {}) {
  Log(LogLevel::kError, event, fields);
}

}  // namespace drawbridge::common

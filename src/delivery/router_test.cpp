#include "delivery/router.h"

#include <gtest/gtest.h>

#include <optional>
#include <thread>

namespace mb::delivery {
namespace {

/// A provider that answers every recipient with one outcome, optionally
/// from another thread, and remembers the jobs it saw.
class StubProvider final : public Provider {
 public:
  StubProvider(std::string name, std::string reported_name, bool async = false)
      : name_(std::move(name)), reported_(std::move(reported_name)), async_(async) {}

  const std::string& name() const override { return name_; }

  void deliver(const queue::DeliveryJob& job, queue::DeliveryAgent::DoneCallback done) override {
    ++calls;
    last_recipients = job.recipients;
    queue::DeliveryResult result;
    result.provider = reported_;
    result.results.assign(job.recipients.size(), queue::RecipientResult{queue::Outcome::Delivered, 250, "2.0.0",
                                                                        "", std::nullopt, "", false});
    if (async_) {
      std::thread([done = std::move(done), result = std::move(result)]() mutable { done(std::move(result)); })
          .join();
    } else {
      done(std::move(result));
    }
  }

  int calls = 0;
  std::vector<std::size_t> last_recipients;

 private:
  std::string name_;
  std::string reported_;
  bool async_;
};

queue::DeliveryJob jobWith(std::size_t n) {
  queue::DeliveryJob job;
  job.envelope.id = queue::newQueueId();
  for (std::size_t i = 0; i < n; ++i) {
    job.envelope.recipients.push_back({"r" + std::to_string(i) + "@example.org", queue::RecipientState::Pending,
                                       0, "", ""});
    job.recipients.push_back(i);
  }
  return job;
}

std::optional<queue::DeliveryResult> run(Router& router, const queue::DeliveryJob& job) {
  std::optional<queue::DeliveryResult> out;
  int calls = 0;
  router.deliver(job, [&](queue::DeliveryResult r) {
    ++calls;
    out = std::move(r);
  });
  EXPECT_EQ(calls, 1);
  return out;
}

TEST(RouterTest, NoProviderIsTemporaryForEveryRecipient) {
  Router router({});
  auto result = run(router, jobWith(3));
  ASSERT_TRUE(result);
  ASSERT_EQ(result->results.size(), 3u);
  for (const auto& r : result->results) {
    EXPECT_EQ(r.outcome, queue::Outcome::TemporaryFailure);
    EXPECT_EQ(r.smtp_code, 451);
    EXPECT_EQ(r.enhanced, "4.3.0");
    EXPECT_EQ(r.detail, "no provider configured");
  }
}

TEST(RouterTest, FirstProviderGetsTheJobAndItsNameIsFilledIn) {
  auto first = std::make_unique<StubProvider>("outbox", "");
  auto second = std::make_unique<StubProvider>("other", "");
  StubProvider* first_ptr = first.get();
  StubProvider* second_ptr = second.get();
  std::vector<std::unique_ptr<Provider>> providers;
  providers.push_back(std::move(first));
  providers.push_back(std::move(second));
  Router router(std::move(providers));

  auto job = jobWith(2);
  job.recipients = {1};
  auto result = run(router, job);
  ASSERT_TRUE(result);
  EXPECT_EQ(first_ptr->calls, 1);
  EXPECT_EQ(second_ptr->calls, 0);
  EXPECT_EQ(first_ptr->last_recipients, std::vector<std::size_t>{1});
  EXPECT_EQ(result->provider, "outbox");
  ASSERT_EQ(result->results.size(), 1u);
  EXPECT_EQ(result->results[0].outcome, queue::Outcome::Delivered);
}

TEST(RouterTest, ProviderChosenNameIsKept) {
  std::vector<std::unique_ptr<Provider>> providers;
  providers.push_back(std::make_unique<StubProvider>("graph", "graph/tenant-a"));
  Router router(std::move(providers));
  auto result = run(router, jobWith(1));
  ASSERT_TRUE(result);
  EXPECT_EQ(result->provider, "graph/tenant-a");
}

TEST(RouterTest, CallbackFromAnotherThread) {
  std::vector<std::unique_ptr<Provider>> providers;
  providers.push_back(std::make_unique<StubProvider>("async", "", true));
  Router router(std::move(providers));
  auto result = run(router, jobWith(2));
  ASSERT_TRUE(result);
  EXPECT_EQ(result->provider, "async");
  EXPECT_EQ(result->results.size(), 2u);
}

}  // namespace
}  // namespace mb::delivery
